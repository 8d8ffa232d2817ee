"""The public protection API: :class:`Protector` and :func:`protect`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .arrays import MemorySink, RowSource
from .backends import Backend, resolve_backend
from .decoders import ConvDecoder, MLPDecoder
from .encoder_loader import as_encoder
from .encoders import OnnxEncoder, TorchEncoder
from .engine import protect_batch
from .errors import PublicRandomnessWarning, SharedNoiseWarning
from .fingerprint import module_fingerprint
from .keys import key_id, keyed_row_ids
from .settings import DEFAULT_START, DEFAULT_STEPS, PRECISIONS, ProtectParams, resolve_eps_alpha
from .staging import HostStaging
from .streaming import NpyFileSink

_DEFAULT_BATCH = {"cpu": 256, "cuda": 8192}


def _encoder_fingerprint(encoder: object) -> str | None:
    if encoder is None:
        return None
    if isinstance(encoder, (TorchEncoder, OnnxEncoder)):  # weights and input contract
        return hashlib.blake2b(json.dumps(encoder.fingerprint(), sort_keys=True).encode(), digest_size=16).hexdigest()
    return f"callable:{type(encoder).__module__}.{type(encoder).__qualname__}"


def _in_dim(decoder: nn.Module) -> int | None:
    d = getattr(decoder, "in_dim", None)
    if isinstance(d, int):
        return d
    first = next((m for m in decoder.modules() if isinstance(m, nn.Linear)), None)
    return first.in_features if first is not None else None


class Protector:
    """AdvFace protection of stored face features against reconstruction attacks.

    For each stored feature ``z`` (a row), with shadow decoder ``S`` and encoder ``E``:

        x~  = S(z)                       (online: the given original image instead)
        c   = E(x~) for start="shadow";  z for "random" / "original"
        z_0 = c (+ U(-eps, eps) per element for "random")
        z_{t+1} = clamp(z_t + alpha * sign(d/dz ||S(z_t) - x~||_1), c - eps, c + eps)

    and ``z_steps`` (rescaled to ``||z||`` when ``renorm``) replaces ``z``. Rows are independent:
    a row's result does not depend on its batch, and the random start depends only on
    ``(seed, row id)``.

    Args:
        decoder: the shadow decoder, ``(B, D) -> (B, C, H, W)``. A private frozen copy is used in
            eval mode; the caller's module is never changed.
        encoder: the face encoder (needed for ``start="shadow"``): an ``nn.Module``, an
            :class:`~advface_fast.encoders.OnnxEncoder`, a model path, or any callable
            ``(B, C, H, W) -> (B, D)``.
        eps: L-inf radius of the perturbation around the centre ``c`` (> 0). Default ``None``:
            ``0.08 sqrt(128 / D)`` for ``D``-dimensional features (0.08 at 128-d, 0.04 at 512-d;
            :func:`~advface_fast.settings.default_eps`), the same relative perturbation at any D.
        alpha: step size (> 0). Default ``None``: ``eps / 5``.
        steps: number of sign steps (>= 0). Default 10.
        start: ``"random"`` (default), ``"shadow"`` (the paper) or ``"original"``. The defaults
            come from the evaluation harness's sweep (``advface_fast.settings.DEFAULT_EPS``; README,
            "Choosing the defaults"); they are tuned for unit-norm templates.
        renorm: rescale each result row to its input row's L2 norm.
        batch_size: rows per batch (default 256 on CPU, 8192 on CUDA).
        device: compute device (default: the input's CUDA device, else CUDA if available, else CPU).
        backend: ``"auto" | "torch" | "mlp" | "triton" | "cuda"`` (``advface-fast backends`` lists them).
        precision: GEMMs of the loop in ``"fp32"`` (IEEE), ``"tf32"`` (CUDA tensor cores) or
            ``"bf16"`` (bf16 operands, fp32 accumulation; signs, projection and z stay fp32).
            Lower precision rounds some near-zero gradients to the other sign: a different,
            equally valid protected feature, not a bit-identical one.
        seed: seed of the random start (public: anyone can recompute that noise).
        key: the defender's secret (bytes or a key file, :mod:`advface_fast.keys`): keys the
            random start's noise per row by a keyed hash instead of the public ``seed`` alone.
            Without it, ``start="random"`` warns (:class:`~advface_fast.errors.PublicRandomnessWarning`).
        rotate: store ``Q z~`` for the key's secret orthogonal ``Q`` (needs ``key``); probes must be
            rotated with :func:`advface_fast.keys.rotate` and the same key before matching.
        progress: show a tqdm progress bar.

    The computation runs in the decoder's parameter dtype (float32 unless you converted it).
    """

    def __init__(
        self,
        decoder: nn.Module,
        encoder: object = None,
        *,
        eps: float | None = None,
        alpha: float | None = None,
        steps: int = DEFAULT_STEPS,
        start: str = DEFAULT_START,
        renorm: bool = True,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        backend: str = "auto",
        precision: str = "fp32",
        seed: int = 0,
        key: Any = None,
        rotate: bool = False,
        progress: bool = True,
    ) -> None:
        from .backends import BACKEND_NAMES
        from .keys import load_key

        if backend not in BACKEND_NAMES:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKEND_NAMES))}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not one of {', '.join(map(repr, PRECISIONS))}")
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be an nn.Module, got {type(decoder).__name__}")
        if next(decoder.parameters(), None) is None:
            raise ValueError("the decoder has no parameters: a shadow decoder is a trained network")
        self._key = load_key(key) if key is not None else None
        if rotate and self._key is None:
            raise ValueError("rotate=True needs key= (the rotation is the key's secret)")
        self.rotate = bool(rotate)
        if start == "random" and self._key is None:
            warnings.warn(
                "start='random' without key=: the noise comes from the public seed, so anyone can recompute it; "
                "pass key= (advface-fast keygen) in production",
                PublicRandomnessWarning,
                stacklevel=3,
            )
        self._eps_alpha = (eps, alpha)
        # validated now with the 128-d defaults where eps/alpha are None; resolved per input dimension
        e, a = resolve_eps_alpha(eps, alpha, 128)
        self.params = ProtectParams(eps=e, alpha=a, steps=steps, start=start, renorm=bool(renorm), seed=seed)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.decoder = decoder
        self.encoder = as_encoder(encoder)
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else None
        self.backend_name = backend
        self.precision = precision
        self.progress = progress
        self._frozen: dict[torch.device, nn.Module] = {}
        self._backends: dict[torch.device, Backend] = {}  # resolved once per frozen decoder
        self._decoder_fp: str | None = None
        self._probed: dict[tuple, tuple[int, ...]] = {}  # (device, dim, encoder) -> decoder output shape
        self._rotations: dict[tuple, torch.Tensor] = {}  # (dim, device, dtype) -> the key's Q

    # -- helpers -----------------------------------------------------------------------------
    def _rotated(self, z: torch.Tensor) -> torch.Tensor:
        """``z Q^T`` with the key's rotation when ``rotate``, else ``z``."""
        if not self.rotate:
            return z
        from .keys import keyed_rotation

        k = (z.shape[1], z.device, z.dtype)
        if k not in self._rotations:
            self._rotations[k] = keyed_rotation(self._key, int(z.shape[1])).to(device=z.device, dtype=z.dtype)
        return z @ self._rotations[k].T

    def _frozen_decoder(self, device: torch.device) -> nn.Module:
        if device not in self._frozen:
            self._frozen[device] = copy.deepcopy(self.decoder).eval().requires_grad_(False).to(device)
        return self._frozen[device]

    def _backend(self, decoder: nn.Module, device: torch.device) -> Backend:
        """The backend for the frozen decoder of ``device``, resolved on the first call: that copy
        never changes, and resolving walks its parameters (~20 us of a 0.6 ms 64-row CPU call)."""
        if device not in self._backends:
            self._backends[device] = resolve_backend(self.backend_name, decoder, device, self.precision)
        return self._backends[device]

    def _compute_device(self, src: RowSource) -> torch.device:
        if self.device is not None:
            return self.device
        if src.device.type == "cuda":
            return src.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _validate_shapes(
        self, decoder: nn.Module, src: RowSource, imgs: RowSource | None, device: torch.device
    ) -> None:
        """Check dimensions by a probe through the decoder (and encoder) before anything is written.
        The probe runs once per (device, dimension, encoder): the frozen decoder of a device never
        changes, and a probe costs a forward pass (~0.2 ms, 5% of a 64-row call on the CPU)."""
        dim = src.shape[1]
        expected = _in_dim(decoder)
        if expected is not None and expected != dim:
            raise ValueError(f"features have dimension {dim} but the decoder expects {expected}")
        shadow = self.params.start == "shadow"
        key = (str(device), dim, id(self.encoder) if shadow else None)
        out_shape = self._probed.get(key)
        if out_shape is None:
            out_shape = self._probe(decoder, dim, device, shadow)
            self._probed[key] = out_shape
        if imgs is not None:
            if len(imgs) != len(src):
                raise ValueError(f"images has {len(imgs)} rows but features has {len(src)}")
            if tuple(imgs.shape[1:]) != out_shape:
                raise ValueError(f"images have shape {imgs.shape[1:]} per row but the decoder outputs {out_shape}")

    def _probe(self, decoder: nn.Module, dim: int, device: torch.device, shadow: bool) -> tuple[int, ...]:
        """The decoder's output shape per row for features of ``dim``; with ``shadow``, also checks
        that the encoder maps those images back to ``dim`` features."""
        if not shadow and type(decoder) in (MLPDecoder, ConvDecoder) and decoder.in_dim == dim:
            return tuple(decoder.out_shape)  # the package's own decoders state their shapes: no forward
        dtype = next(decoder.parameters()).dtype
        probe = torch.randn(2, dim, device=device, dtype=dtype)
        try:
            with torch.no_grad():
                out = decoder(probe)
        except Exception as exc:
            raise ValueError(f"the decoder cannot take features of dimension {dim}: {exc}") from exc
        if shadow:
            if self.encoder is None:
                raise ValueError(
                    'start="shadow" (the paper\'s start point E(S(z))) needs an encoder; '
                    'pass encoder=... or use start="random" or "original"'
                )
            try:
                with torch.no_grad():
                    zz = self.encoder(out)
            except Exception as exc:
                raise ValueError(
                    f"the encoder cannot take the decoder's images of shape {tuple(out.shape[1:])}: {exc}"
                ) from exc
            if tuple(zz.shape) != (2, dim):
                raise ValueError(
                    f"the encoder returns features of shape {tuple(zz.shape[1:])}, the gallery has ({dim},)"
                )
        return tuple(out.shape[1:])

    def _run_id(
        self, src: RowSource, imgs: RowSource | None, backend: str, dtype: torch.dtype, row_ids: np.ndarray | None
    ) -> dict[str, Any]:
        return {
            "input": src.fingerprint(),
            "images": imgs.fingerprint() if imgs is not None else None,
            "row_ids": hashlib.blake2b(row_ids.tobytes(), digest_size=16).hexdigest() if row_ids is not None else None,
            **self.settings(int(src.shape[1])),
            "backend": backend,
            "compute_dtype": str(dtype),
        }

    def settings(self, dim: int) -> dict[str, Any]:
        """What decides a protected row besides its input and row id, for ``dim``-dimensional
        features: the decoder's weights, the encoder (shadow start only), eps/alpha/steps/start,
        renorm, seed, the key's id (never the key), rotation and precision. JSON-serialisable;
        stores that protect in place (a database table) keep it to refuse mixing settings."""
        if self._decoder_fp is None:
            self._decoder_fp = module_fingerprint(self.decoder)
        p = self.params
        e, a = resolve_eps_alpha(*self._eps_alpha, dim)
        return {
            "decoder": self._decoder_fp,
            # only the shadow start calls the encoder: another encoder (or none) changes nothing else
            "encoder": _encoder_fingerprint(self.encoder) if p.start == "shadow" else None,
            "eps": e,
            "alpha": a,
            "steps": p.steps,
            "start": p.start,
            "renorm": p.renorm,
            "seed": p.seed,
            "key": key_id(self._key) if self._key is not None else None,
            "rotate": self.rotate,
            "precision": self.precision,
        }

    # -- main entry --------------------------------------------------------------------------
    def __call__(
        self,
        features: Any,
        *,
        images: Any = None,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        resume: bool = True,
        row_ids: Any = None,
    ) -> Any:
        """Protect a gallery.

        Args:
            features: ``(N, D)`` float16/bfloat16/float32/float64: numpy array, torch tensor (CPU or
                CUDA), cupy array, or path to a ``.npy`` file (streamed, never loaded whole).
                Never modified.
            images: online mode: the original images ``(N, C, H, W)`` (same kinds), used as the
                L1 target instead of the shadow images.
            out: path of an ``.npy`` file to stream the result to (bounded memory for any N).
            overwrite: allow replacing an existing ``out``.
            resume: continue an interrupted run into ``out`` where it stopped (same input and
                settings only); ``False`` discards a partial output.
            row_ids: ``(N,)`` int64 ids that key the random start (default ``0..N-1``), so a
                row's result does not depend on how a gallery was split.

        Returns:
            ``(N, D)`` of the input's type, dtype and device; with ``out``, the written file
            opened as a read-only numpy memmap.
        """
        src = RowSource(features, "features", ndim=2)
        e, a = resolve_eps_alpha(*self._eps_alpha, int(src.shape[1]) if src.shape[1] > 0 else 128)
        if (e, a) != (self.params.eps, self.params.alpha):
            self.params = dataclasses.replace(self.params, eps=e, alpha=a)
        imgs = None
        try:
            imgs = RowSource(images, "images", ndim=4) if images is not None else None
            ids = self._row_ids(row_ids, len(src))
            if ids is None and len(src) == 1 and self.params.start == "random":
                warnings.warn(
                    "one template without row_ids gets the random start of row 0, the same for every such call; "
                    "pass row_ids=[its enrolment id] (the enrolment service, advface-fast serve, draws one)",
                    SharedNoiseWarning,
                    stacklevel=2,
                )
            if self._key is not None:  # the noise counters become keyed hashes of the row ids
                ids = keyed_row_ids(self._key, ids if ids is not None else np.arange(len(src), dtype=np.int64))
            out_path = self._check_out(out, src, imgs, overwrite)
            device = self._compute_device(src)
            decoder = self._frozen_decoder(device)
            backend = self._backend(decoder, device)
            self._validate_shapes(decoder, src, imgs, device)
            src.check_finite()
            if imgs is not None:
                imgs.check_finite()
            dtype = next(decoder.parameters()).dtype
            if out_path is not None:
                np_dtype = np.float32 if src.dtype == torch.bfloat16 else torch.empty(0, dtype=src.dtype).numpy().dtype
                sink: MemorySink | NpyFileSink = NpyFileSink(
                    out_path,
                    src.shape,
                    np.dtype(np_dtype),
                    self._run_id(src, imgs, backend.name, dtype, ids),
                    resume=resume,
                )
            else:
                sink = MemorySink(src)
            self._loop(src, imgs, ids, sink, decoder, backend, device, dtype)
            return sink.finalize()
        finally:
            src.close()
            if imgs is not None:
                imgs.close()

    @staticmethod
    def _row_ids(row_ids: Any, n: int) -> np.ndarray | None:
        if row_ids is None:
            return None
        ids = np.asarray(row_ids.cpu() if isinstance(row_ids, torch.Tensor) else row_ids)
        if ids.shape != (n,) or ids.dtype.kind not in "iu":
            raise ValueError(f"row_ids must be {n} integers, got shape {ids.shape} dtype {ids.dtype}")
        if ids.size and ids.min() < 0:
            raise ValueError("row_ids must be non-negative")
        return ids.astype(np.int64)

    @staticmethod
    def _check_out(out: Any, src: RowSource, imgs: RowSource | None, overwrite: bool) -> Path | None:
        if out is None:
            return None
        path = Path(out)
        if path.suffix != ".npy":
            raise ValueError(f"out must be a .npy path, got {path}")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"the folder of out does not exist: {path.parent}")
        if path.is_dir():
            raise IsADirectoryError(f"out is a directory ({path}); give the path of an .npy file")
        for s in (src, imgs):
            if s is not None and s.path is not None and path.resolve() == s.path.resolve():
                raise ValueError(f"out is the same file as the {s.name} input ({path}); write to another path")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
        return path

    def _loop(
        self,
        src: RowSource,
        imgs: RowSource | None,
        ids: np.ndarray | None,
        sink: Any,
        decoder: nn.Module,
        backend: Backend,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        n = len(src)
        bs = self.batch_size or _DEFAULT_BATCH.get(device.type, 256)
        staging: HostStaging | None = None
        try:
            # a disabled tqdm still costs ~25 us a call: small batches skip it
            bar_cm = (
                tqdm(total=n, initial=sink.rows_done, unit="row", desc="protect", dynamic_ncols=True)
                if self.progress
                else contextlib.nullcontext(_NoBar())
            )
            with bar_cm as bar:
                if src.device.type == "cpu" and (imgs is None or imgs.device.type == "cpu"):
                    # host rows: staged one batch ahead each way (pinned on a GPU; see staging.py)
                    sources = [src] if imgs is None else [src, imgs]
                    staging = HostStaging(sources, device, [dtype] * len(sources), bs, sink.write)
                    for a, b, (z, *x) in staging.batches(sink.rows_done):
                        rid = torch.from_numpy(ids[a:b]) if ids is not None else torch.arange(a, b, dtype=torch.int64)
                        zt = protect_batch(
                            z,
                            rid,
                            decoder,
                            self.encoder,
                            self.params,
                            backend,
                            images=x[0] if x else None,
                            precision=self.precision,
                        )
                        staging.emit(a, self._rotated(zt).to(src.dtype))
                        bar.update(b - a)
                    staging.flush()
                    return
                for a in range(sink.rows_done, n, bs):
                    b = min(a + bs, n)
                    z = src.read(a, b).to(device=device, dtype=dtype, non_blocking=True).contiguous()
                    x = imgs.read(a, b).to(device=device, dtype=dtype, non_blocking=True) if imgs is not None else None
                    rid = torch.from_numpy(ids[a:b]) if ids is not None else torch.arange(a, b, dtype=torch.int64)
                    zt = protect_batch(
                        z, rid, decoder, self.encoder, self.params, backend, images=x, precision=self.precision
                    )
                    sink.write(a, self._rotated(zt).to(src.dtype))
                    bar.update(b - a)
        except BaseException:
            if staging is not None:  # the batch computed before the failure is good: keep it
                with contextlib.suppress(Exception):
                    staging.flush()
            sink.abort()
            raise


class _NoBar:
    """Stands in for the progress bar when ``progress=False``."""

    def update(self, n: int = 1) -> None:
        pass


def protect(
    features: Any,
    decoder: nn.Module,
    encoder: object = None,
    *,
    eps: float | None = None,
    alpha: float | None = None,
    steps: int = DEFAULT_STEPS,
    start: str = DEFAULT_START,
    images: Any = None,
    renorm: bool = True,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    seed: int = 0,
    key: Any = None,
    rotate: bool = False,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    row_ids: Any = None,
    progress: bool = True,
) -> Any:
    """Protect a gallery of face features with AdvFace; see :class:`Protector` for the method and
    arguments. ``features`` ``(N, D)`` (numpy, torch, cupy or ``.npy`` path) -> protected ``(N, D)``
    of the same type and device, or, with ``out=``, the written ``.npy`` opened read-only.

    Example::

        import advface_fast as af
        decoder = af.load_model("shadow.safetensors")
        encoder = af.load_model("encoder.safetensors")
        safe = af.protect(gallery, decoder, encoder)  # eps=0.08, alpha=0.016, steps=10, start="random"
    """
    return Protector(
        decoder,
        encoder,
        eps=eps,
        alpha=alpha,
        steps=steps,
        start=start,
        renorm=renorm,
        batch_size=batch_size,
        device=device,
        backend=backend,
        precision=precision,
        seed=seed,
        key=key,
        rotate=rotate,
        progress=progress,
    )(features, images=images, out=out, overwrite=overwrite, resume=resume, row_ids=row_ids)
