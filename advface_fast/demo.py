"""A small end-to-end demonstration on a toy world that needs no download (runs in ~1 min on CPU).

Toy world: each identity has a smooth random "face" (3 x 16 x 16, low-frequency colour field),
each image of it adds smooth per-image variation. The "recognition" encoder is a fixed random
convolutional feature map with L2-normalised output (random projections keep identities apart).
A defender trains an MLP shadow decoder on it; an attacker trains a *different* decoder (a
ConvDecoder) on other identities. The gallery is protected and the demo reports what it costs
(cosine to the stored feature, rank-1 identification of fresh probes) and what it buys (the
attacker's reconstructions get worse). The synthetic-face benchmark and the shipped model pair
replace this toy world in a later release.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .decoders import ConvDecoder, MLPDecoder
from .encoders import TorchEncoder
from .png import image_grid, write_png
from .protector import protect

SIZE = 16
DIM = 64


def toy_faces(n_ids: int, per_id: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (n_ids*per_id, 3, 16, 16) in [-1, 1], labels)`` of the toy world."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.randn(n_ids, 3, 4, 4, generator=g), size=SIZE, mode="bicubic", align_corners=False)
    var = F.interpolate(
        torch.randn(n_ids * per_id, 3, 4, 4, generator=g), size=SIZE, mode="bicubic", align_corners=False
    )
    imgs = torch.tanh(base.repeat_interleave(per_id, 0) + 0.35 * var)
    return imgs, torch.arange(n_ids).repeat_interleave(per_id)


def toy_encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.Tanh(), nn.Flatten(), nn.Linear(16 * 8 * 8, DIM))


def _train(decoder: nn.Module, z: torch.Tensor, x: torch.Tensor, epochs: int, lr: float = 2e-3) -> nn.Module:
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    decoder.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(z)).split(128):
            loss = (decoder(z[idx]) - x[idx]).abs().mean()  # equation (1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return decoder.eval()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)  # images in [-1, 1] -> range 1
    return float((10 * torch.log10(1 / mse.clamp_min(1e-12))).mean())


def _rank1(gallery: torch.Tensor, probes: torch.Tensor, labels_g: torch.Tensor, labels_p: torch.Tensor) -> float:
    sims = F.normalize(probes, dim=1) @ F.normalize(gallery, dim=1).T
    return float((labels_g[sims.argmax(1)] == labels_p).float().mean())


def run_demo(
    out_dir: str | Path = "advface_demo_out", *, eps: float = 0.05, alpha: float = 0.01, steps: int = 10, seed: int = 0
) -> dict[str, float]:
    """Run the demo, print a table, write ``out_dir/demo_grid.png``; returns the numbers."""
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = TorchEncoder(toy_encoder(seed))
    t0 = time.perf_counter()
    x_def, _ = toy_faces(300, 8, seed + 1)  # defender's training identities
    x_att, _ = toy_faces(300, 8, seed + 2)  # attacker's own identities (disjoint)
    x_gal, lab = toy_faces(200, 2, seed + 3)  # enrolled users: image 0 enrolled, image 1 a probe
    enrol, probe = x_gal[0::2], x_gal[1::2]
    lab_e, lab_p = lab[0::2], lab[1::2]
    with torch.no_grad():
        z_def, z_att, z_gal, z_probe = encoder(x_def), encoder(x_att), encoder(enrol), encoder(probe)
    shadow = _train(MLPDecoder(DIM, [256, 512], (3, SIZE, SIZE)), z_def, x_def, epochs=40)
    attacker = _train(ConvDecoder(DIM, (3, SIZE, SIZE), base_channels=32), z_att, x_att, epochs=40)
    t_train = time.perf_counter() - t0

    t1 = time.perf_counter()
    z_prot = protect(z_gal, shadow, encoder, eps=eps, alpha=alpha, steps=steps, progress=False)
    t_prot = time.perf_counter() - t1

    with torch.no_grad():
        rec_clean, rec_prot = attacker(z_gal), attacker(z_prot)
        id_clean = _rank1(z_gal, encoder(rec_clean), lab_e, lab_e)
        id_prot = _rank1(z_gal, encoder(rec_prot), lab_e, lab_e)
    res = {
        "cosine(stored, protected)": float(F.cosine_similarity(z_gal, z_prot).mean()),
        "rank-1 probes vs stored gallery": _rank1(z_gal, z_probe, lab_e, lab_p),
        "rank-1 probes vs protected gallery": _rank1(z_prot, z_probe, lab_e, lab_p),
        "attacker PSNR from stored (dB)": _psnr(rec_clean, enrol),
        "attacker PSNR from protected (dB)": _psnr(rec_prot, enrol),
        "reconstruction identified, from stored": id_clean,
        "reconstruction identified, from protected": id_prot,
        "protect throughput (rows/s)": len(z_gal) / t_prot,
        "training time (s)": t_train,
    }
    print(f"\nadvface_fast demo (toy world, eps={eps}, alpha={alpha}, steps={steps}, {len(z_gal)} enrolled users)")
    for k, v in res.items():
        print(f"  {k:<44} {v:10.3f}")
    grid = image_grid([enrol[:12].numpy(), rec_clean[:12].numpy(), rec_prot[:12].numpy()])
    path = write_png(out / "demo_grid.png", grid)
    print(f"  rows of {path}: original | attacker's reconstruction from stored | from protected feature")
    return res
