"""An ONNX face recognition model run by onnxruntime (:class:`OnnxEncoder`). Its differentiable
twin for white-box attackers is :class:`~advface_fast.encoders.onnx_torch.OnnxTorchModule`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..optional import import_optional
from .base import ModelFileEncoder, Transform, model_file_contract, run_in_batches
from .input_spec import InputSpec


class OnnxEncoder(ModelFileEncoder):
    """An ONNX face recognition model run by onnxruntime.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers; default CUDA when onnxruntime has it, else CPU.
        spec: the model's input contract. Default: the sidecar ``<path>.json`` or, for model files
            that ship in packages (SFace), the known contract; a file with neither is refused.
        transform: instead of ``spec``, any map applied to the images (as a torch tensor).
        normalize: L2-normalise the output rows.

    Models whose batch dimension is fixed (SFace's is 1) are run one chunk of that size at a time.
    Models that declare unused or initialiser graph inputs, which onnxruntime rejects, are repaired
    in memory (needs the ``onnx`` package).
    """

    suffix = ".onnx"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] | None = None,
        spec: InputSpec | None = None,
        transform: Transform | None = None,
        normalize: bool = True,
    ) -> None:
        ort = import_optional("onnxruntime", "ONNX encoders")

        self.path, self.name, spec = model_file_contract(
            path, spec, transform, "ONNX", InputSpec(), "(pixel - 127.5) / 127.5 RGB 112x112 ArcFace-aligned faces"
        )
        if providers is None:
            avail = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(providers))
            needs_repair = len(self.session.get_inputs()) != 1
        except Exception as first:  # onnxruntime raises its own exception types
            needs_repair, load_error = True, first
        else:
            load_error = None
        if needs_repair:
            try:
                from .onnx_torch import repair_onnx_inputs

                repaired = repair_onnx_inputs(self.path)
                self.session = ort.InferenceSession(repaired, sess_options=opts, providers=list(providers))
            except Exception as exc:
                raise ValueError(f"onnxruntime cannot load {self.path}: {load_error or exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: expected one image input, the model has {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        batch = inputs[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.spec = spec
        self.transform = transform if transform is not None else spec
        self.normalize = normalize

    def torch_module(self) -> nn.Module:
        """The graph in torch (:class:`~advface_fast.encoders.onnx_torch.OnnxTorchModule`)."""
        from .onnx_torch import OnnxTorchModule

        return OnnxTorchModule.from_file(self.path)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self.transform(images) if self.transform is not None else images
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = run_in_batches(arr, self.fixed_batch, lambda chunk: self.session.run(None, {self.input_name: chunk})[0])
        z = torch.from_numpy(out).to(images.device)
        return F.normalize(z, dim=1) if self.normalize else z
