"""What protection costs at a deployed system's operating point, over an eps sweep, on real faces.

A running system decides at one threshold, fitted for a false accept rate on its clean templates.
For each eps this protects the enrolled gallery of a real-faces protocol (LFW's ``pairs.txt`` files
by default; identity folders with ``test_folder``) and scores every probe file against every
enrolled file (all cross-identity pairs are impostors: millions on LFW). It reports TAR at FAR
1e-3 and 1e-4 at the clean gallery's threshold and at a threshold re-fitted on the protected
gallery, for:

- ``AdvFace``: the package's protection (start=random, alpha = eps/5, 10 steps, a key);
- ``uniform L-inf``: uniform noise in the same L-inf ball (``U(-eps, eps)`` per element);
- ``uniform, AdvFace's L2``: uniform noise scaled to the L2 size of AdvFace's own perturbation
  of each template (AdvFace's sign steps end in the corners of the ball, so at one L-inf budget its
  perturbation is about sqrt(3) times longer than uniform noise's): whether AdvFace costs more
  because it moves templates further, or because of the direction it moves them in.

Every template is rescaled to its own norm after perturbation (as ``renorm`` does). The shadow
decoder is the eval-faces one (trained on the CelebA subset, cached). Recognition only: what each
eps buys against reconstruction is what ``eval-faces`` and ``threat-faces`` measure.

    python benchmarks/operating_point_sweep.py --out-dir benchmarks/results/operating-point-lfw
    python benchmarks/operating_point_sweep.py --encoder mobilefacenet \
        --out-dir benchmarks/results/operating-point-lfw-mobilefacenet
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from faces_setup import recognition_data
from machine import run_header

import advface_fast as af
from advface_fast.eval.faces import _operating_sets
from advface_fast.eval.faces_config import FacesEvalConfig
from advface_fast.metrics.operating_point import protected_gallery_operating_points
from advface_fast.settings import default_eps

KEY = b"operating-point-sweep-key-000000"  # fixed: reproducible, not a secret
FACTORS = (0.125, 0.25, 0.375, 0.5, 0.75, 1.0)


def _renorm(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x * (like.norm(dim=1, keepdim=True) / x.norm(dim=1, keepdim=True))


def plot(result: dict, path: Path, privacy: dict | None = None) -> None:
    """``frontier.png``: TAR at FAR 1e-3 against eps (re-fitted: solid; the clean threshold:
    dashed) per method; with ``privacy`` (an eval-faces ``results.json`` of the same protocol and
    encoder), also TAR against its sweep's identity inference by the independent judge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if privacy else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.4), squeeze=False)
    ax = axes[0][0]
    base = result["rows"][0]["operating_point"]["0.001"]["tar_clean"] * 100
    for method, colour in (("AdvFace", "C3"), ("uniform L-inf", "C0"), ("uniform, AdvFace's L2", "C2")):
        rows = [r for r in result["rows"] if r["method"] == method]
        eps = [r["eps"] for r in rows]
        ax.plot(eps, [100 * r["operating_point"]["0.001"]["refit"]["tar"] for r in rows], "-o", c=colour,
                label=f"{method}, re-fitted")  # fmt: skip
        ax.plot(eps, [100 * r["operating_point"]["0.001"]["at_clean_threshold"]["tar"] for r in rows], "--", c=colour,
                label=f"{method}, clean threshold")  # fmt: skip
    ax.axhline(base, c="k", lw=0.8, label="unprotected")
    ax.axhline(base - 1, c="k", lw=0.8, ls=":", label="1 point below")
    ax.set_xlabel("eps (L-inf radius)")
    ax.set_ylabel("TAR at FAR 1e-3 (%)")
    ax.set_title(f"{result['encoder']} on {Path(result['protocol']).parent.name or result['protocol']}")
    ax.legend(fontsize=7)
    if privacy:
        ax = axes[0][1]
        tar = {(r["method"], round(r["eps"], 6)): 100 * r["operating_point"]["0.001"]["refit"]["tar"]
               for r in result["rows"]}  # fmt: skip
        for method, sweep_name, colour in (
            ("AdvFace", "AdvFace start=random", "C3"),
            ("uniform L-inf", "uniform noise", "C0"),
        ):
            used = [x for x in privacy["sweep"] if x["method"] == sweep_name and (method, round(x["param"], 6)) in tar]
            if used:
                pts = [(tar[(method, round(x["param"], 6))], x["identity_inference_E2"]) for x in used]
                ax.plot([p[1] for p in pts], [p[0] for p in pts], "-o", c=colour, label=method)
                for (t, i), x in zip(pts, used, strict=True):
                    ax.annotate(f"{x['param']:g}", (i, t), fontsize=7)
        unprot = privacy["privacy"]["Unprotected"].get(privacy["sweep_attacker"], {}).get("identity_inference_E2")
        if unprot is not None:
            ax.plot([unprot], [base], "ks", label="unprotected")
        ax.set_xlabel(f"identity inference by the judge, attacker {privacy['sweep_attacker']} (%)")
        ax.set_ylabel("TAR at FAR 1e-3, re-fitted (%)")
        ax.set_title("frontier (privacy: the eval-faces sweep)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="FacesEvalConfig JSON (default: LFW pairs, SFace)")
    ap.add_argument("--encoder", default=None, help="override the config's encoder")
    ap.add_argument("--factors", type=float, nargs="+", default=list(FACTORS), help="eps as multiples of the default")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--privacy-from", default=None, help="an eval-faces results.json of the same protocol (plot)")
    ap.add_argument("--plot-only", action="store_true", help="redraw frontier.png from --out-dir's results.json")
    args = ap.parse_args()
    privacy = json.loads(Path(args.privacy_from).read_text()) if args.privacy_from else None
    if args.plot_only:
        plot(
            json.loads((Path(args.out_dir) / "results.json").read_text()), Path(args.out_dir) / "frontier.png", privacy
        )
        return 0
    t0 = time.time()
    cfg = FacesEvalConfig.from_json(args.config)
    if args.encoder:
        cfg = dataclasses.replace(cfg, encoder=args.encoder)
    cfg, data, shadow = recognition_data(cfg, args.cache_dir)
    dim = data.z_test.shape[1]
    g, q, same, valid = _operating_sets(data)
    clean, probes = data.z_test[g], data.z_test[q].numpy()
    rows = []

    def record(method: str, eps: float, protected: torch.Tensor) -> None:
        op = protected_gallery_operating_points(protected.numpy(), clean.numpy(), probes, same, valid)
        cos = float(torch.nn.functional.cosine_similarity(protected, clean, dim=1).mean())
        rows.append({"method": method, "eps": eps, "mean_cosine_to_clean": cos, "operating_point": op})
        o = op["0.001"]
        print(
            f"{method:24} eps {eps:.4f}: cosine {cos:.3f}; TAR@1e-3 clean threshold "
            f"{100 * o['at_clean_threshold']['tar']:.2f}% "
            f"(FAR {o['at_clean_threshold']['far']:.1e}), re-fitted {100 * o['refit']['tar']:.2f}%",
            flush=True,
        )

    record("unprotected", 0.0, clean.clone())
    gen = torch.Generator().manual_seed(cfg.seed)
    for f in args.factors:
        eps = round(f * default_eps(dim), 6)
        adv = torch.from_numpy(
            af.protect(
                clean.numpy(),
                shadow,
                data.encoder,
                eps=eps,
                alpha=eps / 5,
                steps=cfg.steps,
                key=KEY,
                row_ids=g.astype(np.int64),
                progress=False,
            )
        )
        record("AdvFace", eps, adv)
        noise = (torch.rand(clean.shape, generator=gen) * 2 - 1) * eps
        record("uniform L-inf", eps, _renorm(clean + noise, clean))
        adv_l2 = (adv - clean).norm(dim=1, keepdim=True)
        record("uniform, AdvFace's L2", eps, _renorm(clean + noise / noise.norm(dim=1, keepdim=True) * adv_l2, clean))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        **run_header(),
        "protocol": cfg.pairs if not cfg.test_folder else cfg.test_folder,
        "encoder": cfg.encoder,
        "dim": dim,
        "enrolled_files": len(g),
        "probe_files": len(q),
        "rows": rows,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "frontier.png", privacy)
    print(f"wrote {out / 'results.json'} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
