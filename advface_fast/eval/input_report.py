"""The report of an input-method evaluation (:mod:`.input_methods`): tables beside the template
harness's rows, and a grid of reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io.png import image_grid, write_png
from .report import _table

# the paper's LFW figures (AdvFace, CVPR 2023, Table 2): accuracy / identity inference
PAPER = {"DuetFace": (98.02, 95.07), "AdvFace (offline)": (98.05, 3.37)}


def write_input_report(results: dict[str, Any], enrolled: torch.Tensor, recs: dict[str, torch.Tensor], out: Path):
    cfg, util, priv = results["config"], results["utility"], results["privacy"]
    name = cfg["method"]
    hist = results.get("history") or {}
    if "train_seconds" in hist:
        where = "in an earlier run that filled the cache" if hist.get("reused") else "in this run"
        trained = f"; {name} trained in {hist['train_seconds']:.0f} s {where}"
        for stage in ("client", "server"):
            if hist.get(stage) and "val_acc" in hist[stage][-1]:
                trained += f", {stage} model {100 * hist[stage][-1]['val_acc']:.2f}% on validation pairs"
    else:
        trained = ""
    lines = [
        f"# {name} in the synthetic world, beside AdvFace",
        "",
        f"Command: `advface-fast eval-input --method {name} --out-dir <this folder> --cache-dir <cache>` "
        f"({results['seconds']:.0f} s on this machine{trained}). Settings: `results.json` (`config`).",
        "",
        f"{cfg['users']} enrolled held-out people (template: variation 0, fresh probe: variation 1), the "
        "pairs and the attacker's faces of `advface-fast eval` "
        f"({cfg['attacker_ids']} other people x {cfg['attacker_per_id']}). Identity inference: a "
        "reconstruction accepted as the person against their fresh probe, judged by the shipped encoder E "
        "at its threshold (the judge of every row of `advface-fast eval`, so the columns compare) and by "
        f"{name}'s own model at its threshold.",
        "",
        "## Verification",
        "",
    ]
    lines += _table(
        ["method", "accuracy (10-fold)", "TAR at FAR 1e-3", "rank-1"],
        [
            [
                name,
                f"{util['acc']:.2f} +- {util['acc_std']:.2f}",
                f"{util['tar_at_far_1e-3']:.1f}",
                f"{util['rank1']:.1f}",
            ]
        ],
    )
    lines += ["", "## Identity inference and reconstruction quality", ""]
    rows = []
    for attack, r in priv.items():
        rows.append(
            [
                attack,
                f"{r['identity_inference']:.1f}",
                f"{r['identity_inference_own_model']:.1f}",
                f"{r['rank1']:.1f}",
                f"{r['ssim']:.3f}",
                f"{r['psnr']:.2f}",
            ]
        )
    lines += _table(["attacker", "ID inference % (E)", f"ID inference % ({name})", "rank-1 %", "SSIM", "PSNR"], rows)
    comp = results.get("compared")
    if comp:
        lines += ["", f"## Beside the template rows (from `{comp['source']}`, same people, pairs and judge E)", ""]
        lines += [
            "Non-adaptive: the strongest attacker trained on clean templates of its own faces; knows the method: "
            "AdvFace's adaptive attacker (trained on AdvFace-protected templates of its own faces), and for "
            f"{name} the template attackers (trained on {name}'s templates of the attacker's faces: there is "
            f"no clean mapping apart from the method's) and the inverter of the channels the server receives.",
            "",
        ]
        crow = []
        for method, r in comp["rows"].items():
            inf = r["identity_inference"]
            plain = [v for a, v in inf.items() if not a.startswith("adaptive")]
            adaptive = [v for a, v in inf.items() if a.startswith("adaptive")]
            crow.append(
                [method, f"{r['acc']:.2f}", f"{max(plain):.1f}", f"{max(adaptive):.1f}" if adaptive else "-", "-"]
            )
        tmpl = [v["identity_inference"] for k, v in priv.items() if k.startswith("template")]
        views = [v["identity_inference"] for k, v in priv.items() if k.startswith("server view")]
        crow.append([name, f"{util['acc']:.2f}", "-", f"{max(tmpl):.1f}", f"{max(views):.1f}" if views else "-"])
        lines += _table(
            ["method", "accuracy", "ID inference %, non-adaptive", "knows the method (templates)", "server's channels"],
            crow,
        )
        lines += [
            "",
            "The paper's LFW figures for comparison (accuracy / identity inference): "
            + "; ".join(f"{k} {a} / {i}" for k, (a, i) in PAPER.items())
            + ".",
        ]
    if recs:
        keys = list(recs)
        grid = image_grid([enrolled[:8].numpy()] + [recs[k][:8].numpy() for k in keys], scale=3)
        write_png(out / "grid.png", grid)
        lines += [
            "",
            "## Reconstructions",
            "",
            "![grid](grid.png)",
            "",
            "Rows: enrolled face, " + ", ".join(keys) + ".",
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
