"""The evaluation report: Markdown tables in the shape of the paper's, a frontier plot, a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io.png import image_grid, write_png


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _cosine(row: dict[str, Any]) -> str:
    """The mean cosine of a method's stored templates to the clean ones ('' in results written before
    it was recorded)."""
    return f"{row['mean_cosine_to_clean']:.3f}" if "mean_cosine_to_clean" in row else ""


def frontier_png(sweep: list[dict[str, Any]], path: Path, baseline_acc: float, baseline_inf: float) -> Path | None:
    """Verification accuracy against identity inference rate, one line per method (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for method in dict.fromkeys(r["method"] for r in sweep if "," not in r["method"]):
        pts = [r for r in sweep if r["method"] == method]
        ax.plot([p["identity_inference"] for p in pts], [p["acc"] for p in pts], marker="o", label=method)
        for p in pts:
            ax.annotate(
                f"{p['param']:g}",
                (p["identity_inference"], p["acc"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.scatter([baseline_inf], [baseline_acc], marker="*", s=120, color="k", label="unprotected", zorder=3)
    ax.set_xlabel("identity inference rate of non-adaptive attackers (%)  (lower is more private)")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title("privacy-utility frontier (labels: eps, or DP epsilon)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


FRONTIER_SKIPPED = "frontier.png skipped: matplotlib is not installed (pip install 'advface_fast[eval]')"


def write_report(
    results: dict[str, Any], originals: torch.Tensor, recs: dict[str, torch.Tensor], out: Path
) -> list[str]:
    """Write ``report.md``, ``grid.png`` and (with matplotlib) ``frontier.png`` to ``out``; returns
    what was written and a line for what was skipped."""
    cfg, util, priv = results["config"], results["utility"], results["privacy"]
    methods = list(util)
    attackers = cfg["attackers"]
    dim = results.get("dim", 128)
    lines = [
        "# AdvFace evaluation on the synthetic-face world",
        "",
        *([f"**{cfg['note']}**", ""] if cfg.get("note") else []),
        f"{dim}-d templates; {cfg['users']} enrolled people never seen by any model; AdvFace eps = {cfg['eps']:g}, "
        f"alpha = {cfg['eps'] * cfg['alpha_ratio']:g}, steps = {cfg['steps']}; attackers trained on "
        f"{cfg['attacker_ids']} x {cfg['attacker_per_id']} images of other people for {cfg['attacker_epochs']} "
        f"epochs. System threshold (squared L2, fitted on unprotected templates): {results['threshold']:.3f}. "
        f"Laplace DP: L1 sensitivity {results['laplace_sensitivity_l1']:.2f} (unit-norm {dim}-d templates), "
        "scale = sensitivity / epsilon.",
        "",
        "## What protection costs: recognition",
        "",
        "Accuracy: 10-fold verification on one genuine and one impostor pair per person. TAR@FAR=1e-3: every "
        f"stored template against every probe ({util[methods[0]]['vs_fresh'].get('impostor_pairs', 'n (n - 1)')} "
        "impostor pairs), at the threshold re-fitted on each gallery and at the unprotected gallery's threshold "
        "(what a running system keeps; n/a for runs made before it was measured). Rank-1: each probe's nearest "
        "stored template.",
        "",
    ]
    lines += _table(
        [
            "method",
            "accuracy vs fresh probe (%)",
            "TAR@FAR=1e-3, re-fitted (%)",
            "TAR at the clean threshold (%)",
            "rank-1 (%)",
            "accuracy protected vs protected (%)",
            "mean cosine to the clean template",
        ],
        [
            [
                m,
                f"{util[m]['vs_fresh']['acc']:.2f} ± {util[m]['vs_fresh']['acc_std']:.2f}",
                f"{util[m]['vs_fresh']['tar_at_far_1e-3']:.1f}",
                (
                    f"{util[m]['vs_fresh']['tar_at_clean_threshold']:.1f}"
                    if "tar_at_clean_threshold" in util[m]["vs_fresh"]
                    else "n/a"
                ),
                f"{util[m]['vs_fresh']['rank1']:.1f}",
                f"{util[m]['vs_protected']['acc']:.2f}",
                _cosine(util[m]),
            ]
            for m in methods
        ],
    )
    lines += [
        "",
        "## What protection buys: identity inference rate of reconstructions (%)",
        "",
        "Non-adaptive attackers were trained on clean templates; the adaptive one on AdvFace-protected "
        "templates of its own faces (it knows the defence and its settings).",
        "",
    ]
    adaptive_cols = sorted({k for m in methods for k in priv[m] if k.startswith("adaptive")})
    lines += _table(
        ["method", *attackers, *adaptive_cols],
        [
            [
                m,
                *[f"{priv[m][a]['identity_inference']:.1f}" for a in attackers],
                *[f"{priv[m][a]['identity_inference']:.1f}" if a in priv[m] else "" for a in adaptive_cols],
            ]
            for m in methods
        ],
    )
    lines += ["", "## Reconstruction quality against the enrolled face: SSIM / PSNR (dB)", ""]
    lines += _table(
        ["method", *attackers],
        [[m, *[f"{priv[m][a]['ssim']:.3f} / {priv[m][a]['psnr']:.1f}" for a in attackers]] for m in methods],
    )
    lines += ["", "## Rank-1 identification of reconstructions among the fresh probes (%)", ""]
    lines += _table(
        ["method", *attackers, *adaptive_cols],
        [
            [
                m,
                *[f"{priv[m][a]['rank1']:.1f}" for a in attackers],
                *[f"{priv[m][a]['rank1']:.1f}" if a in priv[m] else "" for a in adaptive_cols],
            ]
            for m in methods
        ],
    )
    lines += ["", "## Sweep", ""]
    lines += _table(
        [
            "method",
            "eps / DP epsilon / steps / alpha/eps",
            "accuracy (%)",
            "mean identity inference (%)",
            "mean cosine to the clean template",
        ],
        [
            [r["method"], f"{r['param']:g}", f"{r['acc']:.2f}", f"{r['identity_inference']:.1f}", _cosine(r)]
            for r in results["sweep"]
        ],
    )
    for prec, eff in results.get("precision_effect", {}).items():
        lines += [
            "",
            f"**{prec} GEMMs in the loop** (row `AdvFace start={cfg['starts'][0]}, {prec}` above): "
            f"{100 * eff['elements_differing_from_fp32']:.1f}% of elements "
            f"({100 * eff['rows_differing_from_fp32']:.0f}% of rows) end differently from the fp32 run "
            "(a near-zero gradient rounded to the other sign moves an element by alpha), "
            f"mean cosine to the fp32 result {eff['mean_cosine_to_fp32']:.4f}; the tables "
            "show what that does to recognition and to the attacks.",
        ]
    base = util["unprotected"]["vs_fresh"]["acc"]
    base_inf = sum(priv["unprotected"][a]["identity_inference"] for a in attackers) / len(attackers)
    written = ["report.md", "grid.png"]
    if frontier_png(results["sweep"], out / "frontier.png", base, base_inf):
        lines += ["", "![frontier](frontier.png)"]
        written.append("frontier.png")
    else:
        lines += ["", f"({FRONTIER_SKIPPED})"]
        written.append(f"({FRONTIER_SKIPPED})")
    rows = [originals[:12].numpy()] + [recs[m][:12].numpy() for m in methods if m in recs]
    write_png(out / "grid.png", image_grid(rows, scale=2))
    lines += [
        "",
        "![reconstructions](grid.png)",
        "",
        f"Rows: the enrolled faces, then the {cfg['attackers'][0]} attacker's reconstruction from the "
        "templates of each method in the order of the tables.",
        "",
        "Protection speed: "
        + ", ".join(f"{k} {v:.0f} templates/s" for k, v in results["protect_templates_per_s"].items())
        + f" (CPU, backend auto). Total time of this run: {results['seconds']:.0f} s.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return written
