"""Errors raised by advface_fast. Each subclasses the builtin a caller would catch anyway."""

from __future__ import annotations


class AdvFaceError(Exception):
    """Base class of the package's own errors."""


class GalleryFormatError(AdvFaceError, ValueError):
    """A gallery file (``.npy``) is corrupt, truncated or of an unsupported layout."""


class ImageReadError(AdvFaceError, ValueError):
    """Image files of a face collection cannot be decoded (corrupt, truncated, not an image, over
    the pixel bound); the message names them."""


class ModelFormatError(AdvFaceError, ValueError):
    """A weight file is not an advface_fast model file, or does not match its own config."""


class BackendUnavailableError(AdvFaceError, RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


class ResumeMismatchError(AdvFaceError, ValueError):
    """An interrupted run's partial output belongs to a different input or different settings."""


class NonFiniteError(AdvFaceError, ValueError):
    """A computation that must give finite templates did not (NaN weights, overflow): nothing is
    returned or written for it, never an unprotected or non-finite template."""


class PublicRandomnessWarning(UserWarning):
    """The protection's randomness comes from a public seed (no secret key was given)."""


class SharedNoiseWarning(UserWarning):
    """One template protected without ``row_ids``: it gets row 0's random start, the same noise as
    every other call of that kind (pass the enrolment id as ``row_ids``)."""
