"""The real-faces report: tables beside the paper's LFW figures, a frontier plot, one small grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io.png import image_grid, write_png
from .report import FRONTIER_SKIPPED, _table

LFW_CREDIT = (
    'LFW: G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller, "Labeled Faces in the Wild: A Database for '
    'Studying Face Recognition in Unconstrained Environments", UMass TR 07-49, 2007; deep funneling: G. B. '
    "Huang, M. Mattar, H. Lee, E. Learned-Miller, NIPS 2012."
)
CELEBA_CREDIT = 'CelebA: Z. Liu, P. Luo, X. Wang, X. Tang, "Deep Learning Face Attributes in the Wild", ICCV 2015.'
DATA_PATH_KEYS = ("pairs", "pairs_images", "test_folder", "train_images", "train_identity")


# a judge that verifies the set's own clean pairs no better than this (chance: 50%) cannot say
# whether a reconstruction shows the person: its identity inference would read as protection
JUDGE_MIN_CLEAN_ACCURACY = 75.0


def judge_warning(clean_accuracy: float | None) -> list[str]:
    """Report lines saying the independent judge cannot recognise this data, when its accuracy on
    the protocol's clean pairs is below :data:`JUDGE_MIN_CLEAN_ACCURACY` (else none)."""
    if clean_accuracy is None or clean_accuracy >= JUDGE_MIN_CLEAN_ACCURACY:
        return []
    return [
        "",
        f"**The independent judge E2 cannot recognise these faces**: it verifies the set's own clean pairs at "
        f"{clean_accuracy:.1f}% (chance 50%; below {JUDGE_MIN_CLEAN_ACCURACY:.0f}% its verdicts mean nothing), so "
        "its identity inference below says nothing about protection; read E's.",
    ]


def data_credit(cfg: dict[str, Any]) -> str:
    """The credit line for the public datasets a run read (recognised by "lfw" / "celeba" in its data
    paths); other data gets a line saying that its credit is the user's to add."""
    paths = " ".join(str(cfg.get(k) or "") for k in DATA_PATH_KEYS).lower()
    credits = [c for key, c in (("lfw", LFW_CREDIT), ("celeba", CELEBA_CREDIT)) if key in paths]
    if not credits:
        return "Data: the folders named above (their credit, if any, is not known to the harness)."
    return "Data credit. " + " ".join(credits)


def protocol_source(cfg: dict[str, Any]) -> str:
    """Where the evaluated pairs come from, for a report's prose."""
    if cfg.get("test_folder"):
        return f"identity folders `{cfg['test_folder']}`"
    return f"the pairs of `{cfg['pairs']}`"


def command_sentence(results: dict[str, Any]) -> str:
    """How to reproduce a report: the command that wrote it, or where its settings are."""
    if results.get("command"):
        return f"Command: `{results['command']}`."
    return "Written by the Python API; its settings are in results.json."


def operating_point_lines(util: dict[str, Any], methods: list[str]) -> list[str]:
    """The operating-point table: TAR at FAR 1e-3 and 1e-4 at the clean gallery's threshold (what a
    running system has) and at a threshold re-fitted for the protected gallery (empty for runs
    made before it was measured)."""
    first = util[methods[0]].get("operating_point")
    if not first:
        return []
    fars = [f for f in ("0.001", "0.0001") if first.get(f)]
    lines = [
        "",
        "### At the operating point of a deployed system",
        "",
        f"Every enrolled file against every probe file: {first['genuine']:,} genuine and {first['impostors']:,} "
        "impostor (cross-identity) scores. TAR at the threshold fitted on the *clean* gallery (what a running "
        "system uses unless it is re-tuned; the measured FAR beside it) and at a threshold re-fitted on the "
        "protected gallery's impostors. FARs the impostors cannot measure are not shown.",
        "",
    ]
    header = ["method"]
    for f in fars:
        header += [f"TAR@FAR {float(f):g}, clean threshold (%)", "its FAR", f"TAR@FAR {float(f):g}, re-fitted (%)"]
    rows = []
    for m in methods:
        op = util[m].get("operating_point") or {}
        row = [m]
        for f in fars:
            o = op.get(f)
            row += (
                [
                    f"{100 * o['at_clean_threshold']['tar']:.2f}",
                    f"{o['at_clean_threshold']['far']:.1e}",
                    f"{100 * o['refit']['tar']:.2f}",
                ]
                if o
                else ["n/a"] * 3
            )
        rows.append(row)
    return lines + _table(header, rows)


def paper_figure(method: str, table: str, paper: dict[str, dict[str, float]]) -> str:
    """The paper's LFW figure for ``method`` in ``table`` (``"accuracy"`` or ``"identity_inference"``),
    or ``""`` where the paper has none."""
    if "identity-trained" in method:  # a defence beyond the paper: no figure of its own
        return ""
    key = (
        "unprotected"
        if method == "Unprotected"
        else "random"
        if method.startswith("Random")
        else "dp"
        if method.startswith("DP")
        else "online"
        if "online" in method
        else "offline"
        if "offline" in method
        else None
    )
    v = paper[table].get(key) if key else None
    return f"{v:.2f}" if v is not None else ""


def _frontier(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sweep = results["sweep"]
    fig, axes = plt.subplots(1, 2 if results.get("judge") else 1, figsize=(11, 4.4), dpi=110, squeeze=False)
    enc, judge = results.get("encoder"), results.get("judge")
    e_name = enc.get("name", "E") if isinstance(enc, dict) else str(enc or "E")
    judges = [("identity_inference_E", f"judged by E ({e_name}, system threshold)")]
    if judge:
        e2_name = judge.get("name", "E2") if isinstance(judge, dict) else str(judge)
        judges.append(("identity_inference_E2", f"judged by E2 ({e2_name}, independent)"))
    base = results["utility"]["Unprotected"]["acc"]
    for ax, (key, title) in zip(axes[0], judges, strict=False):
        for method in dict.fromkeys(r["method"] for r in sweep):
            pts = [r for r in sweep if r["method"] == method]
            ax.plot([p[key] for p in pts], [p["acc"] for p in pts], marker="o", label=method)
            for p in pts:
                ax.annotate(
                    f"{p['param']:g}", (p[key], p["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        unp = results["privacy"]["Unprotected"][results["sweep_attacker"]].get(key)
        if unp is not None:
            ax.scatter([unp], [base], marker="*", s=120, color="k", label="unprotected", zorder=3)
        ax.set_xlabel(f"identity inference of the {results['sweep_attacker']} attacker (%)")
        ax.set_ylabel("verification accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("real faces: privacy-utility frontier (labels: eps, or DP epsilon)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_faces_report(
    results: dict[str, Any], originals: torch.Tensor, recs: dict[str, torch.Tensor], out: Path
) -> list[str]:
    """Write ``report.md``, ``grid.png`` and (with matplotlib) ``frontier.png``; returns what was
    written and a line for what was skipped."""
    cfg, util, priv, paper = results["config"], results["utility"], results["privacy"], results["paper_lfw"]
    # the paper's figures are LFW's: beside a pairs protocol only, never beside the user's own folders
    beside = [] if cfg.get("test_folder") else ["paper, LFW"]
    methods = list(util)
    attackers = list(priv["Unprotected"])
    judge = results.get("judge")
    first_priv = next(iter(priv["Unprotected"].values()))
    lines = [
        "# AdvFace on real faces",
        "",
        *([f"**{cfg['note']}**", ""] if cfg.get("note") else []),
        f"Protocol: `{cfg['test_folder'] or cfg['pairs']}` ({results['n_pairs']} pairs in "
        f"{results.get('n_folds', 10)} folds, "
        f"{results['n_enrolled_templates']} enrolled templates: the first image of each pair is stored, the "
        "second is the fresh probe). "
        f"System encoder E: `{results['encoder']['name']}` (input {results['encoder']['input']}); faces aligned by "
        f"YuNet to the ArcFace 112x112 template (test set: {results['alignment']['test']}). "
        f"Decoders output {cfg['size']}x{cfg['size']} RGB and are trained on `{cfg['train_images']}` "
        f"(alignment {results['alignment']['train']}; faces never detected are dropped; "
        f"{results['train_test_identical_crops']} crops identical to an evaluated one), with flips. "
        f"AdvFace eps = {cfg['eps']:.4g}, alpha = {results['alpha']:g}, steps = {cfg['steps']}, shadow decoder "
        f"MLPDecoder {cfg['shadow_hidden']}"
        + (
            f" (the identity-trained shadow: the same decoder fine-tuned {cfg['shadow_identity_steps']} steps "
            "with the identity loss through E, the defender's own model)"
            if cfg.get("shadow_identity_steps")
            else ""
        )
        + ". System threshold (squared L2, fitted on clean pairs): "
        f"{results['threshold_E']:.3f}.",
        "",
        "## What protection costs: verification (protected template vs fresh probe)",
        "",
        (
            f"TAR at FAR 1e-3 stands on {util['Unprotected']['impostor_pairs']} impostor pairs (at most "
            f"{int(util['Unprotected']['impostor_pairs'] * 1e-3)} false accepts), so it is coarse."
            if util["Unprotected"]["tar_at_far_1e-3"] is not None
            else f"TAR at FAR 1e-3 is not reported: {util['Unprotected']['impostor_pairs']} impostor pairs cannot "
            "measure it (it needs at least 1,000)."
        ),
        "",
    ]
    lines += _table(
        [
            "method",
            "accuracy (%)",
            *[f"{b} (%)" for b in beside],
            "TAR@FAR=1e-3 (%)",
            "mean cosine to the clean template",
        ],
        [
            [
                m,
                f"{util[m]['acc']:.2f} ± {util[m]['acc_std']:.2f}",
                *[paper_figure(m, "accuracy", paper) for _ in beside],
                "n/a" if util[m]["tar_at_far_1e-3"] is None else f"{util[m]['tar_at_far_1e-3']:.1f}",
                f"{util[m]['mean_cosine_to_clean']:.3f}",
            ]
            for m in methods
        ],
    )
    lines += operating_point_lines(util, methods)
    judged = (
        f"; E2 = `{judge['name']}` (independent: no defender or attacker uses it; clean-pair accuracy "
        f"{results['clean_accuracy_E2']:.2f}%, its own threshold {results['threshold_E2']:.3f}) on "
        + (
            "all of them"
            if first_priv.get("judged_pairs") == first_priv["pairs"]
            else f"the first {first_priv.get('judged_pairs')} of them"
        )
        if judge
        else ""
    )
    lines += [
        "",
        "## What protection buys: identity inference of reconstructions (%)",
        *judge_warning(results.get("clean_accuracy_E2") if judge else None),
        "",
        f"Attackers (non-adaptive: trained on clean templates of the training faces; they know neither the "
        f"defence nor the shadow decoder) reconstruct the enrolled face of {first_priv['pairs']} matched pairs "
        f"({cfg['privacy_per_fold']} per fold). Identity inference = the reconstruction is accepted as the "
        f"person against the pair's probe: by E at the system threshold{judged} (each threshold fitted on clean "
        "pairs: the median over folds of the middle of the most accurate range). Each cell: E / E2.",
        "",
    ]

    def cell(m: str, a: str) -> str:
        r = priv[m][a]
        e2 = f" / {r['identity_inference_E2']:.1f}" if "identity_inference_E2" in r else ""
        return f"{r['identity_inference_E']:.1f}{e2}"

    lines += _table(
        ["method", *attackers, *beside],
        [
            [m, *[cell(m, a) for a in attackers], *[paper_figure(m, "identity_inference", paper) for _ in beside]]
            for m in methods
        ],
    )
    lines += [
        "",
        "## Wrong-person acceptance of the same reconstructions (%): the floor to read the table above against",
        "",
        "Each reconstruction compared with the probes of the other scored pairs (other people): how often it "
        "is accepted as someone it is not. A blurry average face can match many people, so identity inference "
        "means something only well above this. Each cell: E / E2.",
        "",
    ]

    def floor(m: str, a: str) -> str:
        r = priv[m][a]
        e2 = f" / {r['wrong_person_E2']:.1f}" if "wrong_person_E2" in r else ""
        return f"{r['wrong_person_E']:.1f}{e2}"

    lines += _table(["method", *attackers], [[m, *[floor(m, a) for a in attackers]] for m in methods])
    lines += [
        "",
        "## Rank-1 of reconstructions among the scored probes (E), and SSIM / PSNR (dB) to the enrolled face",
        "",
    ]
    lines += _table(
        ["method", *attackers],
        [
            [
                m,
                *[
                    f"{priv[m][a]['rank1_E']:.1f} · {priv[m][a]['ssim']:.3f} / {priv[m][a]['psnr']:.1f}"
                    for a in attackers
                ],
            ]
            for m in methods
        ],
    )
    lines += ["", f"## Sweep (attacker: {results['sweep_attacker']}, the strongest on clean templates)", ""]
    lines += _table(
        ["method", "eps / DP epsilon", "accuracy (%)", "identity inference E (%)", "identity inference E2 (%)"],
        [
            [
                r["method"],
                f"{r['param']:g}",
                f"{r['acc']:.2f}",
                f"{r['identity_inference_E']:.1f}",
                "" if r.get("identity_inference_E2") is None else f"{r['identity_inference_E2']:.1f}",
            ]
            for r in results["sweep"]
        ],
    )
    written = ["report.md", "grid.png"]
    if _frontier(results, out / "frontier.png"):
        lines += ["", "![frontier](frontier.png)"]
        written.append("frontier.png")
    else:
        lines += ["", f"({FRONTIER_SKIPPED})"]
        written.append(f"({FRONTIER_SKIPPED})")
    show = [m for m in methods if m in recs]
    grid_rows = [originals[:8].numpy()] + [recs[m][:8].numpy() for m in show]
    write_png(out / "grid.png", image_grid(grid_rows, scale=2))
    lines += [
        "",
        "![reconstructions](grid.png)",
        "",
        f"Rows: the enrolled aligned faces ({cfg['size']}x{cfg['size']}), then the {attackers[0]} attacker's "
        "reconstruction from the stored template of each method: " + "; ".join(show) + ".",
        "",
        "Protection speed (CPU, backend auto, including E for the shadow start): "
        + ", ".join(f"{k}: {v:.0f} templates/s" for k, v in results["protect_templates_per_s"].items())
        + f". Total time of this run: {results['seconds']:.0f} s (with the caches it had). "
        + command_sentence(results),
        "",
        data_credit(cfg),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return written
