"""Fuzz targets for the package's readers of untrusted bytes: each takes one input and may only
refuse it with the reader's documented error (a ``ValueError`` family error naming the problem);
any other exception is a finding. The runner (``run.py``) bounds time per input and memory.

- ``npy_header``: a gallery's ``.npy`` header (:func:`advface_fast.io.npy.read_npy_header`);
- ``insightface_bin``: an insightface verification ``.bin`` (pickle opcodes walked first);
- ``service_npz``: the service's bulk body (:func:`advface_fast.deploy.service.wire.read_npz`, then
  the value checks);
- ``service_json``: a JSON body through the typed request model and the value checks;
- ``encoder_sidecar``: an encoder's input-contract sidecar (``InputSpec.from_json``);
- ``model_config``: a model file's stored config, rebuilt as ``load_model`` does (meta device).

Each target has seeds (``SEEDS``): valid inputs the mutations start from.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable

import numpy as np

DIM = 8
_TMP = tempfile.mkdtemp(prefix="advface-fuzz-")


def _file(data: bytes, name: str) -> str:
    path = os.path.join(_TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def npy_header(data: bytes) -> None:
    from advface_fast.errors import GalleryFormatError
    from advface_fast.io.npy import read_npy_header

    with contextlib.suppress(GalleryFormatError):
        read_npy_header(_file(data, "g.npy"))


def insightface_bin(data: bytes) -> None:
    from advface_fast.data.readers import read_insightface_bin

    with contextlib.suppress(ValueError):
        read_insightface_bin(_file(data, "v.bin"), size=8, max_pixels=1 << 16, max_total_bytes=1 << 22)


def service_npz(data: bytes) -> None:
    from advface_fast.deploy.service.wire import RequestError, check_ids, check_labels, check_rows, read_npz

    try:
        arrays = read_npz(data)
        rows = check_rows(arrays["templates"], DIM, 64)
        ids = check_ids(arrays.get("ids"), len(rows))
        check_labels(arrays.get("labels"), ids)
    except RequestError:
        pass


def service_json(data: bytes) -> None:
    from pydantic import ValidationError

    from advface_fast.deploy.service.schemas import EnrolRequest
    from advface_fast.deploy.service.wire import RequestError, check_ids, check_labels, check_rows

    try:
        body = EnrolRequest.model_validate_json(data)
        rows = check_rows(body.templates, DIM, 64)
        ids = check_ids(body.ids, len(rows))
        check_labels(body.labels, ids)
    except (ValidationError, RequestError, RecursionError):
        # RecursionError: pydantic's own depth limit; the service answers it 400 ("parsing the body")
        pass


def encoder_sidecar(data: bytes) -> None:
    from advface_fast.encoders.input_spec import InputSpec

    with contextlib.suppress(ValueError, TypeError):
        InputSpec.from_json(data.decode("utf-8", errors="replace"))


def model_config(data: bytes) -> None:
    import torch

    from advface_fast.models.serialization import registered_models

    try:
        config = json.loads(data)
    except (ValueError, RecursionError):
        return
    if not isinstance(config, dict):
        return
    for cls in registered_models().values():
        try:
            with torch.device("meta"):
                cls(**config)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            pass  # what load_model refuses as ModelFormatError


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _bin() -> bytes:
    import pickle

    from PIL import Image

    img = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(img, format="PNG")
    return pickle.dumps(([img.getvalue(), img.getvalue()], [True]), protocol=2)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "npy_header": npy_header,
    "insightface_bin": insightface_bin,
    "service_npz": service_npz,
    "service_json": service_json,
    "encoder_sidecar": encoder_sidecar,
    "model_config": model_config,
}


def seeds(name: str) -> list[bytes]:
    z = np.ones((2, DIM), np.float32) / DIM**0.5
    return {
        "npy_header": [_npy(z), _npy(z.astype(np.float64)), _npy(np.zeros(0, np.float32))],
        "insightface_bin": [_bin()],
        "service_npz": [_npz(templates=z), _npz(templates=z, ids=np.array([1, 2]), labels=np.array(["a", "b"]))],
        "service_json": [json.dumps({"templates": z.tolist(), "ids": [1, 2], "labels": ["a", "b"]}).encode()],
        "encoder_sidecar": [
            json.dumps(
                {"size": 112, "channels": "RGB", "mean": 127.5, "std": 128.0, "alignment": "arcface-112"}
            ).encode()
        ],
        "model_config": [
            json.dumps({"in_dim": 8, "hidden": [16], "out_shape": [3, 4, 4]}).encode(),
            json.dumps({"in_dim": 8, "out_shape": [3, 16, 16], "base_channels": 4}).encode(),
        ],
    }[name]
