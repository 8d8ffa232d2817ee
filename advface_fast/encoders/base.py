"""Face recognition encoders: any callable ``images (B, C, H, W) float -> features (B, D)``.

The protection engine calls an encoder on images the *decoder* produced (shadow images), in the
decoder's value range (``tanh`` -> [-1, 1]). An encoder trained on another range (e.g. SFace takes
RGB 0..255) owns an :class:`~advface_fast.encoders.input_spec.InputSpec` that maps one to the other (or a
free-form ``transform``). Features come back L2-normalised by default, since galleries are
compared by cosine. ``fingerprint()`` identifies the function an encoder computes (its weights and
its input contract): decoders trained for an encoder record it.

A model format is one :class:`ModelEncoder` subclass (its own file in this package) that carries
everything the package needs of it: ``suffix`` (the one table of suffixes,
:data:`~advface_fast.encoders.loader.FORMATS`, is built from it), ``from_file`` (loading, with the
model's input contract), ``fingerprint`` (what run manifests, caches and decoders record) and
``differentiable`` (its twin with autograd, for white-box attackers). Adding a format is that
class and one entry in ``FORMATS``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .input_spec import InputSpec, file_sha256, sidecar_path, spec_for_file

Transform = Callable[[torch.Tensor], torch.Tensor]


@runtime_checkable
class Encoder(Protocol):
    """What the engine needs of an encoder: images ``(B, C, H, W)`` -> features ``(B, D)``,
    on the images' device (the engine converts dtype afterwards)."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class ModelEncoder(ABC):
    """An encoder of one model format: images ``(B, C, H, W)`` float -> features ``(B, D)``.

    Subclasses set ``suffix`` (the file suffix of the format, e.g. ``".onnx"``) and ``name`` (a
    label for reports), and implement loading (:meth:`from_file`), :meth:`__call__`,
    :meth:`fingerprint` and, where the format has one, :meth:`differentiable`.
    """

    suffix: ClassVar[str]
    name: str

    @classmethod
    @abstractmethod
    def from_file(cls, path: str | os.PathLike[str], spec: InputSpec | None = None) -> ModelEncoder:
        """Load a model file of this format; ``spec`` overrides the contract its sidecar or the
        known-models table gives."""

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def fingerprint(self) -> dict:
        """``{"name", "weights", "input"}``: what identifies the function the encoder computes."""

    def differentiable(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``images -> unit features`` with autograd (for attackers that optimise through E)."""
        raise TypeError(f"no differentiable form of {type(self).__name__} for an identity loss")


def same_encoder(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two encoder fingerprints (:meth:`ModelEncoder.fingerprint` dicts) name the same
    function: the same weights and input contract (names may differ). An unknown side (None or
    empty) cannot be compared and counts as the same."""
    if not a or not b:
        return True
    return (a.get("weights"), a.get("input")) == (b.get("weights"), b.get("input"))


def encoder_fingerprint(encoder: object) -> str | None:
    """What identifies an encoder in a run manifest: a digest of its :meth:`~ModelEncoder.fingerprint`
    (weights and input contract), else its class (a plain callable; ``None`` for no encoder)."""
    if encoder is None:
        return None
    fp = getattr(encoder, "fingerprint", None)
    if callable(fp):
        return hashlib.blake2b(json.dumps(fp(), sort_keys=True).encode(), digest_size=16).hexdigest()
    return f"callable:{type(encoder).__module__}.{type(encoder).__qualname__}"


def differentiable(encoder: object) -> Callable[[torch.Tensor], torch.Tensor]:
    """``images -> unit features`` with autograd for an encoder: its format's twin
    (:meth:`ModelEncoder.differentiable`); a plain callable has none."""
    fn = getattr(encoder, "differentiable", None)
    if not callable(fn):
        raise TypeError(f"no differentiable form of {type(encoder).__name__} for an identity loss")
    return fn()


class TorchEncoder(ModelEncoder):
    """Wrap an ``nn.Module`` as an encoder.

    The module is copied, frozen and put in eval mode (the caller's module is never changed), and
    follows the images to their device and dtype on first use.

    Args:
        module: ``(B, C, H, W) -> (B, D)`` network (trailing singleton axes are flattened).
        spec: the model's input contract (default: none; the images go in as they are, any shape).
        transform: instead of ``spec``, any map applied to the images first.
        normalize: L2-normalise the output rows.
        name: a label for reports.

    ``features(images)`` is the same function with autograd (for attackers that optimise through
    the encoder); calling the encoder runs it without. Files: ``.safetensors`` written by
    :func:`~advface_fast.models.serialization.save_model`.
    """

    suffix = ".safetensors"

    def __init__(
        self,
        module: nn.Module,
        *,
        spec: InputSpec | None = None,
        transform: Transform | None = None,
        normalize: bool = True,
        name: str | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"TorchEncoder needs an nn.Module, got {type(module).__name__}")
        if spec is not None and transform is not None:
            raise ValueError("give an encoder a spec or a transform, not both")
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.spec = spec  # None with no transform: the images go in as they are (any shape)
        self.transform = transform if transform is not None else spec
        self.normalize = normalize
        self.name = name or type(module).__name__

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, D)``, differentiable in ``images``."""
        first = next(self.module.parameters(), None)
        if first is None:
            first = next(self.module.buffers(), None)
        if first is not None and (first.device != images.device or first.dtype != images.dtype):
            self.module.to(device=images.device, dtype=images.dtype)
        x = self.transform(images) if self.transform is not None else images
        z = self.module(x).flatten(1)  # (B, D, 1, 1) heads of conv nets become (B, D)
        return F.normalize(z, dim=1) if self.normalize else z

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def differentiable(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self.features

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], spec: InputSpec | None = None) -> TorchEncoder:
        """A model file of :func:`~advface_fast.models.serialization.save_model`; its contract is
        ``spec``, else a sidecar ``<model>.json``, else the package's images at the model's own
        size."""
        from ..models.serialization import load_model

        module = load_model(path)
        if spec is None:
            known = spec_for_file(path)
            size = getattr(module, "image_size", 0)
            spec = known[1] if known else InputSpec(size=int(size), alignment="none")
        return cls(module, spec=spec, name=Path(path).stem)

    def fingerprint(self) -> dict:
        from ..models.fingerprint import module_fingerprint

        if self.spec is not None:
            spec = self.spec.to_json()
        else:
            spec = "as-is" if self.transform is None else "transform:" + _qualname(self.transform)
        return {"name": self.name, "weights": module_fingerprint(self.module), "input": spec}


class ModelFileEncoder(ModelEncoder):
    """A model file run by another runtime (ONNX, TFLite), through the model's input contract:
    ``path``, ``name``, ``spec`` (or a free-form ``transform``). Subclasses give the runtime
    (``__init__``, ``__call__``) and the graph as a torch module (:meth:`torch_module`)."""

    path: Path
    spec: InputSpec | None
    transform: Transform | None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], spec: InputSpec | None = None) -> ModelFileEncoder:
        return cls(path, spec=spec)  # type: ignore[call-arg]

    def fingerprint(self) -> dict:
        return file_fingerprint(self)

    def torch_module(self) -> nn.Module:
        """The model's graph evaluated in torch (what :meth:`differentiable` runs)."""
        raise TypeError(f"{type(self).__name__} has no torch form of its graph")

    def differentiable(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The graph in torch through the same contract (a ``transform`` cannot be carried over)."""
        if self.spec is None:
            return super().differentiable()
        return TorchEncoder(self.torch_module(), spec=self.spec).features


def _qualname(fn: object) -> str:
    """A process-independent name of a transform (a repr would hold its address)."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def model_file_contract(
    path: str | os.PathLike[str],
    spec: InputSpec | None,
    transform: Transform | None,
    kind: str,
    example: InputSpec,
    example_means: str,
) -> tuple[Path, str, InputSpec | None]:
    """``(path, name, spec)`` of a model file an encoder runs: the file must exist; without
    ``spec`` or ``transform`` its contract comes from a sidecar or the known-models table, else it
    is refused with a message showing ``example`` (a contract for "a model that takes
    ``example_means``")."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{kind} model not found: {file}")
    if spec is not None and transform is not None:
        raise ValueError("give an encoder a spec or a transform, not both")
    if spec is not None or transform is not None:
        return file, file.stem, spec
    known = spec_for_file(file)
    if known is None:
        raise ValueError(
            f"{file}: unknown input contract (size, channel order, value range). Pass "
            f"spec=InputSpec(...) or write {sidecar_path(file).name} beside it, e.g. "
            f"{example.to_json()} for a model that takes {example_means}"
        )
    return file, known[0], known[1]


def file_fingerprint(encoder: Any) -> dict:
    """What identifies a model-file encoder (``path``, ``name``, ``spec``, ``transform``): its
    name, the file's SHA-256 and its input contract."""
    spec = encoder.spec
    contract = spec.to_json() if spec is not None else "transform:" + _qualname(encoder.transform)
    return {"name": encoder.name, "weights": "sha256:" + file_sha256(encoder.path), "input": contract}


def run_in_batches(arr: np.ndarray, fixed_batch: int | None, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``run`` over ``arr`` ``(N, ...)`` -> ``(N, D)``: in one call, or in chunks of a model's fixed
    batch size (the last chunk padded with copies of its last row, whose outputs are dropped)."""
    step = fixed_batch or len(arr)
    outs = []
    for i in range(0, len(arr), step):
        chunk = arr[i : i + step]
        if len(chunk) < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
        outs.append(np.asarray(run(chunk)).reshape(len(chunk), -1)[: len(arr) - i])
    return np.concatenate(outs)
