"""The typed request and response bodies of the service's JSON endpoints (FastAPI/pydantic;
they are what ``/docs`` and ``/openapi.json`` describe). Values are JSON numbers; what the schema
cannot say (dimension, finite, non-zero, float32 range) is checked by :func:`.wire.check_rows`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

Number = StrictFloat | StrictInt
Template = Annotated[list[Number], Field(min_length=1, description="one template: D numbers")]
Label = Annotated[str, Field(min_length=1, max_length=256, description="a person's enrolment name")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProtectRequest(_Strict):
    templates: list[Template] | Template = Field(description="(N, D) rows or one (D,) template")
    ids: list[StrictInt] | None = Field(
        None, description="enrolment ids 0..2^63-1 keying each row's random start; drawn when absent"
    )


class ProtectResponse(BaseModel):
    templates: list[list[float]] = Field(description="the protected templates, (N, D)")
    ids: list[int] = Field(description="their ids (keep them: they reproduce the result)")


class EnrolRequest(ProtectRequest):
    labels: list[Label] | None = Field(None, description="the person of each template (default: its id)")


class EnrolResponse(BaseModel):
    ids: list[int]
    labels: list[str]


class VerifyRequest(_Strict):
    template: Template = Field(description="the probe template (any scale; the service applies the key)")
    claim: Label = Field(description="the claimed person (a label) or an enrolment id")
    return_score: bool = Field(False, description="also return the score (needs an API key with scope 'scores')")


class VerifyResponse(BaseModel):
    decision: Literal["accept", "reject"]
    score: float | None = None
    threshold: float | None = None


class IdentifyRequest(_Strict):
    template: Template
    return_score: bool = Field(False, description="also return the best score (scope 'scores')")


class IdentifyResponse(BaseModel):
    decision: Literal["match", "unknown"]
    identity: str | None = Field(description="the person found; null when unknown")
    score: float | None = None
    threshold: float | None = None


class Health(BaseModel):
    status: Literal["ok"]
    dim: int


class ErrorResponse(BaseModel):
    error: str
