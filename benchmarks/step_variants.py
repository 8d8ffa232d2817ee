"""AdvFace's step against a recognition-aware variant, on the operating-point frontier, on real faces.

Each method protects the enrolled templates of a real-faces protocol (LFW's ``pairs.txt`` files by
default) over a sweep of its budget; each point is then measured twice:

- recognition: TAR at FAR 1e-3, at the clean gallery's threshold and re-fitted on the protected
  gallery, every cross-identity pair of enrolled and probe files an impostor (as eval-faces);
- privacy: identity inference by the independent judge (E2) of two attackers that know the
  training distribution, not the shadow decoder or the key: the naive conv decoder (L1-trained on
  clean templates) and the same decoder fine-tuned with the identity loss through E (``conv+id``,
  the eval-faces sweep's attacker, the strongest on clean templates; the frontier's axis).

and described by what recognition pays for: the mean cosine of a protected template to its clean
start, and the mean shift of genuine and impostor scores (clean probes).

Methods:

- ``AdvFace``: the package's step (start=random, alpha = eps/5, 10 steps), the eval-faces sweep's
  call, so its points reproduce that sweep's;
- ``uniform L-inf``: uniform noise in the same L-inf ball;
- ``cosine cap``: :func:`advface_fast.eval.cosine_cap.cosine_cap`, the budget a minimum cosine to
  the start (10 geodesic steps of theta/5).

    python benchmarks/step_variants.py --out-dir benchmarks/results/step-variants-lfw

The attacker and the judge come from the eval-faces cache (trained on the first run: about an
hour on 2 cores); the config is the committed eval-lfw one with only the conv attackers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from faces_setup import EVAL_LFW_CONFIG, conv_attackers
from machine import run_header

import advface_fast as af
from advface_fast.eval.baselines import uniform_linf
from advface_fast.eval.cosine_cap import cosine_cap
from advface_fast.eval.faces import _operating_sets, attack_scores, utility

EPS = (0.02, 0.04, 0.06, 0.08)
MIN_COSINES = (0.98, 0.96, 0.94, 0.92, 0.88, 0.84)


def score_shifts(data, templates: torch.Tensor) -> dict[str, float]:
    """Mean cosine of protected enrolled templates to their clean start, and the mean change of
    genuine and impostor scores against clean probes."""
    g, q, same, valid = _operating_sets(data)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x.double(), dim=1)

    clean, prot, probes = unit(data.z_test[g]), unit(templates[g]), unit(data.z_test[q])
    delta = (prot - clean) @ probes.T
    gen, imp = torch.from_numpy(same & valid), torch.from_numpy(~same & valid)
    return {
        "mean_cosine_to_clean": float((prot * clean).sum(1).mean()),
        "genuine_shift": float(delta[gen].mean()),
        "impostor_shift": float(delta[imp].mean()),
        "impostor_sd": float((prot @ probes.T)[imp].std()),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    rows = result["rows"]
    base = next(r for r in rows if r["method"] == "unprotected")
    for method, colour in (("AdvFace", "C3"), ("uniform L-inf", "C0"), ("cosine cap", "C2")):
        pts = [r for r in rows if r["method"] == method]
        x = [r["identity_inference_E2"] for r in pts]
        y = [r["tar_refit"] for r in pts]
        ax.plot(x, y, "-o", c=colour, label=method)
        for r in pts:
            ax.annotate(f"{r['budget']:g}", (r["identity_inference_E2"], r["tar_refit"]), fontsize=7)
    ax.plot([base["identity_inference_E2"]], [base["tar_refit"]], "ks", label="unprotected")
    ax.axhline(base["tar_refit"] - 1, c="k", lw=0.8, ls=":", label="1 point below")
    ax.axvline(base["wrong_person_E2"], c="grey", lw=0.8, ls="--", label="wrong-person floor")
    ax.set_xlabel(f"identity inference by the judge, attacker {result['attacker']} (%)")
    ax.set_ylabel("TAR at FAR 1e-3, re-fitted (%)")
    ax.set_title(f"{result['encoder']} on LFW: the step against the budget (labels: eps / min cosine)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(EVAL_LFW_CONFIG), help="FacesEvalConfig JSON (default: the eval-lfw one)")
    ap.add_argument("--eps", type=float, nargs="+", default=list(EPS))
    ap.add_argument("--min-cosines", type=float, nargs="+", default=list(MIN_COSINES))
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out_dir)
    cfg, data, shadow, attackers = conv_attackers(args.config, out, args.cache_dir, True)
    name = "conv+id"
    z, rows = data.z_test, torch.from_numpy(data.enrolled)
    results = []

    def record(method: str, budget: float, enrolled: torch.Tensor) -> None:
        templates = z.clone()
        templates[rows] = enrolled
        op = utility(data, templates)["operating_point"]["0.001"]
        priv = {a: attack_scores(data, m, templates, True, f"{a}|step-variants-{method}-{budget}")[0]
                for a, m in attackers.items()}  # fmt: skip
        row = {
            "method": method,
            "budget": budget,
            "tar_refit": 100 * op["refit"]["tar"],
            "tar_at_clean_threshold": 100 * op["at_clean_threshold"]["tar"],
            "far_at_clean_threshold": op["at_clean_threshold"]["far"],
            **score_shifts(data, templates),
            **{k: priv[name][k] for k in ("identity_inference_E", "identity_inference_E2", "wrong_person_E2", "ssim")},
            "attackers": {a: {k: r[k] for k in ("identity_inference_E2", "wrong_person_E2")} for a, r in priv.items()},
        }
        results.append(row)
        print(
            f"{method:14} {budget:<5g} TAR@1e-3 {row['tar_refit']:.2f} "
            f"(clean thr {row['tar_at_clean_threshold']:.2f}); "
            f"cos {row['mean_cosine_to_clean']:.3f}, genuine {row['genuine_shift']:+.4f}, impostor "
            f"{row['impostor_shift']:+.4f}; identity inference E2 "
            + ", ".join(f"{a} {r['identity_inference_E2']:.1f}%" for a, r in row["attackers"].items()),
            flush=True,
        )

    record("unprotected", 0.0, z[rows])
    for e in args.eps:
        adv = af.protect(
            z[rows], shadow, data.encoder, eps=e, alpha=e * cfg.alpha_ratio, steps=cfg.steps, start="random",
            seed=cfg.seed, row_ids=rows, progress=False,
        )  # fmt: skip
        record("AdvFace", e, torch.as_tensor(adv))
        record("uniform L-inf", e, uniform_linf(z[rows], e, cfg.seed))
    frozen = shadow.eval().requires_grad_(False)
    for c in args.min_cosines:
        record("cosine cap", c, cosine_cap(frozen, z[rows], c, steps=cfg.steps, seed=cfg.seed, row_ids=rows))
    result = {
        **run_header(),
        "protocol": cfg.pairs,
        "encoder": cfg.encoder,
        "judge": cfg.judge,
        "attacker": name,
        "enrolled_templates": len(rows),
        "rows": results,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "frontier.png")
    print(f"wrote {out / 'results.json'} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
