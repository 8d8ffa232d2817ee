"""The public protection API: :class:`Protector` and :func:`protect`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .encoders.base import encoder_fingerprint, same_encoder
from .encoders.loader import as_encoder
from .engines import Engine, resolve_backend
from .engines.batch import protect_batch
from .errors import NonFiniteError, PublicRandomnessWarning, SharedNoiseWarning
from .io.arrays import MemorySink, RowSource
from .io.staging import HostStaging
from .io.streaming import NpyFileSink
from .keymodes import KeyedTransform
from .keys import key_id, keyed_row_ids
from .models.fingerprint import module_fingerprint
from .protect_checks import check_out, check_row_ids, check_trained_for, in_dim, probe_output_shape
from .settings import REFERENCE_DIM, RunSettings, resolve_eps_alpha

_DEFAULT_BATCH = {"cpu": 256, "cuda": 8192}


class Protector:
    """AdvFace protection of stored face features against reconstruction attacks.

    For each stored feature ``z`` (a row), with shadow decoder ``S`` and encoder ``E``:

        x~  = S(z)                       (online: the given original image instead)
        c   = E(x~) for start="shadow";  z for "random" / "original"
        z_0 = c (+ U(-eps, eps) per element for "random")
        z_{t+1} = clamp(z_t + alpha * sign(d/dz ||S(z_t) - x~||_1), c - eps, c + eps)

    and ``z_steps`` (rescaled to ``||z||`` when ``renorm``) replaces ``z``. Protection is defined
    on a template's direction: a row is protected as ``z / ||z||`` (the unit sphere the decoder and
    eps are defined on) and returned at its own norm, so a gallery stored at any scale (raw
    ArcFace-class outputs have norms of 20-30) gets the same relative protection as a unit one.
    All-zero rows (no direction) and non-finite rows are refused before anything is written.
    Rows are independent:
    a row's result does not depend on its batch, and the random start depends only on
    ``(seed, row id)``.

    Args:
        decoder: the shadow decoder, ``(B, D) -> (B, C, H, W)``. A private frozen copy is used in
            eval mode; the caller's module is never changed.
        encoder: the face encoder (needed for ``start="shadow"``): an ``nn.Module``, an
            :class:`~advface_fast.encoders.onnx.OnnxEncoder` or
            :class:`~advface_fast.encoders.tflite.TFLiteEncoder`, a model path (``.onnx``,
            ``.tflite``, ``.safetensors``), ``"sface"``, ``"mobilefacenet"``, or any callable
            ``(B, C, H, W) -> (B, D)``.
        settings: a :class:`~advface_fast.settings.RunSettings` (default: the defaults).
        **keywords: fields of :class:`~advface_fast.settings.RunSettings` replacing those of
            ``settings``: ``eps``, ``alpha``, ``steps``, ``start``, ``renorm``, ``backend``,
            ``precision``, ``seed``, ``key``, ``rotate``, ``shards``, ``batch_size``, ``device``, ``progress``
            (what each means and its default: there).

    The computation runs in the decoder's parameter dtype (float32 unless you converted it).
    """

    def __init__(
        self, decoder: nn.Module, encoder: object = None, *, settings: RunSettings | None = None, **keywords: Any
    ) -> None:
        from .engines import BACKEND_NAMES
        from .keys import load_key

        run = self.run_settings = RunSettings.of(settings, **keywords)
        if run.backend not in BACKEND_NAMES:
            raise ValueError(f"backend={run.backend!r} is not one of {', '.join(map(repr, BACKEND_NAMES))}")
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be an nn.Module, got {type(decoder).__name__}")
        if next(decoder.parameters(), None) is None:
            raise ValueError("the decoder has no parameters: a shadow decoder is a trained network")
        self._key = load_key(run.key) if run.key is not None else None
        self.rotate = bool(run.rotate)
        self.shards = run.shards
        if run.start == "random" and self._key is None:
            warnings.warn(
                "start='random' without key=: the noise comes from the public seed, so anyone can recompute it; "
                "pass key= (advface-fast keygen) in production",
                PublicRandomnessWarning,
                stacklevel=3,
            )
        self.params = run.params(REFERENCE_DIM)  # eps/alpha defaults resolved per input dimension in __call__
        self.decoder = decoder
        self.encoder = as_encoder(encoder)
        check_trained_for(decoder, self.encoder)
        self.batch_size = run.batch_size
        self.device = _check_device(run.device) if run.device is not None else None
        self.backend_name = run.backend
        self.precision = run.precision
        self.progress = run.progress
        self._frozen: dict[torch.device, nn.Module] = {}
        self._backends: dict[torch.device, Engine] = {}  # resolved once per frozen decoder
        self._decoder_fp: str | None = None
        self._probed: dict[tuple, tuple[int, ...]] = {}  # (device, dim, encoder) -> decoder output shape
        self.keyed = KeyedTransform(self._key, self.rotate, self.shards)  # templates -> stored records

    # -- helpers -----------------------------------------------------------------------------
    def _frozen_decoder(self, device: torch.device) -> nn.Module:
        if device not in self._frozen:
            self._frozen[device] = copy.deepcopy(self.decoder).eval().requires_grad_(False).to(device)
        return self._frozen[device]

    def _backend(self, decoder: nn.Module, device: torch.device) -> Engine:
        """The engine for the frozen decoder of ``device``, resolved on the first call: that copy
        never changes, and resolving walks its parameters (a noticeable part of a small CPU call)."""
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
        expected = in_dim(decoder)
        if expected is not None and expected != dim:
            raise ValueError(f"features have dimension {dim} but the decoder expects {expected}")
        shadow = self.params.start == "shadow"
        key = (str(device), dim, id(self.encoder) if shadow else None)
        out_shape = self._probed.get(key)
        if out_shape is None:
            out_shape = probe_output_shape(decoder, self.encoder, dim, device, shadow)
            self._probed[key] = out_shape
        if imgs is not None:
            if len(imgs) != len(src):
                raise ValueError(f"images has {len(imgs)} rows but features has {len(src)}")
            if tuple(imgs.shape[1:]) != out_shape:
                raise ValueError(f"images have shape {imgs.shape[1:]} per row but the decoder outputs {out_shape}")

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
        e, a = resolve_eps_alpha(self.run_settings.eps, self.run_settings.alpha, dim)
        return {
            "decoder": self._decoder_fp,
            # only the shadow start calls the encoder: another encoder (or none) changes nothing else
            "encoder": encoder_fingerprint(self.encoder) if p.start == "shadow" else None,
            "eps": e,
            "alpha": a,
            "steps": p.steps,
            "start": p.start,
            "renorm": p.renorm,
            "seed": p.seed,
            "key": key_id(self._key) if self._key is not None else None,
            "rotate": self.rotate,
            **({"shards": self.shards} if self.shards > 1 else {}),  # absent: one system-wide rotation
            "precision": self.precision,
        }

    def encoder_identity(self, input_record: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The fingerprint (name, weights, input contract) of the encoder whose templates this
        protects: the given encoder's, else the one the decoder's file records, else the input
        file's provenance's; None when nothing says."""
        fp = getattr(self.encoder, "fingerprint", None)
        if callable(fp):
            return fp()
        from .models.serialization import recorded_encoder

        rec = recorded_encoder(self.decoder)
        if rec is not None:
            return rec[1]
        return (input_record or {}).get("encoder")

    def provenance(self, rows: int, dim: int, input_record: dict[str, Any] | None = None) -> dict[str, Any]:
        """The provenance record (:mod:`advface_fast.provenance`) of ``rows`` templates of ``dim``
        protected here; the input's record (``embed``'s) gives its labels and source."""
        from . import provenance

        inp = input_record or {}
        encoder = self.encoder_identity(inp)
        want = inp.get("encoder")
        if not same_encoder(want, encoder):
            raise ValueError(
                f"the input's templates come from encoder {want.get('name')!r} (weights {want.get('weights')}), "
                "but this "
                f"protection is for {encoder.get('name')!r} (weights {encoder.get('weights')}): its shadow decoder "
                "was trained on another encoder's features"
            )
        return provenance.new_record(
            "protected",
            rows,
            dim,
            encoder,
            protection=provenance.protection_record(self.settings(dim)),
            labels=inp.get("labels"),
            source=inp.get("source"),
        )

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
        reprotect: bool = False,
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
            reprotect: accept an input file whose provenance says it is protected already
                (refused by default).

        Returns:
            ``(N, D)`` of the input's type, dtype and device; with ``out``, the written file
            opened as a read-only numpy memmap, with its provenance sidecar
            (``<stem>.provenance.json``) and, when ``row_ids`` are given, ``<stem>.ids.npy``.
        """
        from . import provenance

        input_record = provenance.refuse_protected_input(
            features if isinstance(features, (str, os.PathLike)) else None, reprotect
        )
        src = RowSource(features, "features", ndim=2)
        e, a = resolve_eps_alpha(
            self.run_settings.eps, self.run_settings.alpha, int(src.shape[1]) if src.shape[1] > 0 else REFERENCE_DIM
        )
        if (e, a) != (self.params.eps, self.params.alpha):
            self.params = dataclasses.replace(self.params, eps=e, alpha=a)
        imgs = None
        try:
            imgs = RowSource(images, "images", ndim=4) if images is not None else None
            enrolment_ids = ids = check_row_ids(row_ids, len(src))
            if ids is None and len(src) == 1 and self.params.start == "random":
                warnings.warn(
                    "one template without row_ids gets the random start of row 0, the same for every such call; "
                    "pass row_ids=[its enrolment id] (the enrolment service, advface-fast serve, draws one)",
                    SharedNoiseWarning,
                    stacklevel=2,
                )
            if self._key is not None:  # the noise counters become keyed hashes of the row ids
                ids = keyed_row_ids(self._key, ids if ids is not None else np.arange(len(src), dtype=np.int64))
            out_path = check_out(out, src, imgs, overwrite)
            device = self._compute_device(src)
            decoder = self._frozen_decoder(device)
            backend = self._backend(decoder, device)
            self._validate_shapes(decoder, src, imgs, device)
            src.check_finite(nonzero=True)
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
            record = self.provenance(len(src), int(src.shape[1]), input_record) if out_path is not None else None
            # each row's shard under shard keys, from its enrolment id (the matcher derives the same)
            eids = enrolment_ids if enrolment_ids is not None else np.arange(len(src), dtype=np.int64)
            groups = self.keyed.groups(eids)
            self._loop(src, imgs, ids, groups, sink, decoder, backend, device, dtype)
            result = sink.finalize()
            if out_path is not None:
                if enrolment_ids is not None:
                    np.save(provenance.ids_path(out_path), enrolment_ids)
                provenance.write(out_path, record)
            return result
        finally:
            src.close()
            if imgs is not None:
                imgs.close()

    def _loop(
        self,
        src: RowSource,
        imgs: RowSource | None,
        ids: np.ndarray | None,
        groups: np.ndarray | None,
        sink: Any,
        decoder: nn.Module,
        backend: Engine,
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
                        u, norm = _direction(z)
                        zt = protect_batch(
                            u,
                            rid,
                            decoder,
                            self.encoder,
                            self.params,
                            backend,
                            images=x[0] if x else None,
                            precision=self.precision,
                        )
                        rows = groups[a:b] if groups is not None else None
                        staging.emit(a, self.keyed.records(_scaled(zt, norm, z.dtype), rows).to(src.dtype))
                        bar.update(b - a)
                    staging.flush()
                    return
                for a in range(sink.rows_done, n, bs):
                    b = min(a + bs, n)
                    z = src.read(a, b).to(device=device, dtype=dtype, non_blocking=True).contiguous()
                    x = imgs.read(a, b).to(device=device, dtype=dtype, non_blocking=True) if imgs is not None else None
                    rid = torch.from_numpy(ids[a:b]) if ids is not None else torch.arange(a, b, dtype=torch.int64)
                    u, norm = _direction(z)
                    zt = protect_batch(
                        u, rid, decoder, self.encoder, self.params, backend, images=x, precision=self.precision
                    )
                    rows = groups[a:b] if groups is not None else None
                    sink.write(a, self.keyed.records(_scaled(zt, norm, z.dtype), rows).to(src.dtype))
                    bar.update(b - a)
        except BaseException:
            if staging is not None:  # the batch computed before the failure is good: keep it
                with contextlib.suppress(Exception):
                    staging.flush()
            sink.abort()
            raise


def _direction(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z / ||z||, ||z||)`` per row, the norm taken in float64 (a finite template of huge
    entries must not overflow it); the caller checked that no row is zero."""
    n = torch.linalg.vector_norm(z.to(torch.float64), dim=1, keepdim=True)
    return (z.to(torch.float64) / n).to(z.dtype), n


def _scaled(z: torch.Tensor, norm: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The protected direction ``z`` back at its template's norm, in ``dtype``; refuses a result
    the dtype cannot hold (a template within one step of the dtype's largest value)."""
    out = (z.to(torch.float64) * norm).to(dtype)
    if not bool(torch.isfinite(out).all()):
        raise NonFiniteError(
            f"a protected template overflows {dtype} at its input's norm (up to {float(norm.max()):.3g}): "
            "store templates at a smaller scale (unit norm is the usual one)"
        )
    return out


class _NoBar:
    """Stands in for the progress bar when ``progress=False``."""

    def update(self, n: int = 1) -> None:
        pass


def protect(
    features: Any,
    decoder: nn.Module,
    encoder: object = None,
    *,
    images: Any = None,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    row_ids: Any = None,
    reprotect: bool = False,
    settings: RunSettings | None = None,
    **keywords: Any,
) -> Any:
    """Protect a gallery of face features with AdvFace; see :class:`Protector` for the method, and
    :class:`~advface_fast.settings.RunSettings` for ``settings`` and the setting keywords
    (``eps``, ``alpha``, ``steps``, ``start``, ``backend``, ``precision``, ``key``, ...).
    ``features`` ``(N, D)`` (numpy, torch, cupy or ``.npy`` path) -> protected ``(N, D)`` of the
    same type and device, or, with ``out=``, the written ``.npy`` opened read-only; ``images``,
    ``out``, ``overwrite``, ``resume``, ``row_ids``, ``reprotect``: as in :meth:`Protector.__call__`.

    Example::

        import advface_fast as af
        decoder = af.load_model("shadow.safetensors")
        encoder = af.load_model("encoder.safetensors")
        safe = af.protect(gallery, decoder, encoder)  # eps=0.04 at 128-d, alpha=eps/5, steps=10, start="random"
    """
    protector = Protector(decoder, encoder, settings=settings, **keywords)
    return protector(
        features, images=images, out=out, overwrite=overwrite, resume=resume, row_ids=row_ids, reprotect=reprotect
    )


def _check_device(name: Any) -> torch.device:
    """``device=`` as a torch device, refusing by name what cannot run protection here."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {name!r}: protection runs on 'cpu' or 'cuda[:N]'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: protection runs on 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r}, but torch sees no CUDA GPU here (torch.cuda.is_available() is False): use "
            "device='cpu' or leave device unset"
        )
    return dev
