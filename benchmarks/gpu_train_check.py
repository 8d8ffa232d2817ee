"""Short GPU check of the training paths (bf16 autocast) and of the demo on a GPU.

    python benchmarks/gpu_train_check.py --out DIR

Trains the encoder for one epoch and a shadow decoder for two on a small synthetic set on the GPU,
checks the losses fall and the outputs are finite, then runs the demo (protect on the GPU) and
writes its table and picture.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import advface_fast as af
from advface_fast.cli.demo import run_demo
from advface_fast.data import SynthFaces
from advface_fast.encoders.base import TorchEncoder
from advface_fast.train import train_decoder, train_encoder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/gpu_train")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    res: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    sf = SynthFaces(32)
    x, y = sf.dataset(200, 16)
    xv, yv = sf.dataset(100, 4, id_offset=10_000)
    t = time.time()
    enc, h = train_encoder(x, y, val=(xv, yv), epochs=3, device="cuda", progress=False)
    res["encoder"] = {"seconds": time.time() - t, "history": h}
    t = time.time()
    _, h2 = train_decoder(
        TorchEncoder(enc),
        x,
        af.MLPDecoder(128, [512, 1024], (3, 32, 32)),
        val_images=xv[:64],
        epochs=3,
        device="cuda",
        progress=False,
    )
    res["decoder"] = {"seconds": time.time() - t, "history": h2}
    ok = h[-1]["loss"] < h[0]["loss"] and h2[-1]["loss"] < h2[0]["loss"] and h2[-1]["val_psnr"] > 10
    t = time.time()
    res["demo"] = run_demo(out, users=500)
    res["demo_seconds"] = time.time() - t
    res["ok"] = bool(ok)
    (out / "gpu_train_check.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("encoder", "decoder")}, default=float))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
