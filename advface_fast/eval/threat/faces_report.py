"""The real-faces threat suite's report: the defences' cost, the attacks by both judges, key
recovery and unlinkability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..faces_report import command_sentence, data_credit, judge_warning, protocol_source
from ..report import _table
from .report import utility_table


def _name(fingerprint: dict[str, Any] | str) -> str:
    if not isinstance(fingerprint, dict):
        return str(fingerprint)
    w = str(fingerprint.get("weights", ""))
    return f"{fingerprint.get('name')} ({w[:19]}{'...' if len(w) > 19 else ''})"


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{r['identity_inference_E2']:.1f} / {r['identity_inference_E']:.1f}"


def write_faces_threat_report(results: dict[str, Any], out: Path, command: str | None = None) -> None:
    cfg, fc, util, table = results["config"], results["faces_config"], results["utility"], results["attacks"]
    defences = list(util)
    attacks = list(dict.fromkeys(a for d in defences for a in table[d]))
    first = next(iter(table[defences[0]].values()))
    floor = max(r.get("wrong_person_E2", 0.0) for d in defences for r in table[d].values())
    enc = results["encoder"]
    e_name = enc.get("name", "E") if isinstance(enc, dict) else str(enc)
    lines = [
        f"# Threat model on real faces ({e_name}): attackers who know the method",
        "",
        *([f"**{cfg['note']}**", ""] if cfg.get("note") else []),
        f"System encoder E: `{_name(results['encoder'])}`; independent judge E2: `{_name(results['judge'])}` "
        "(no defender or "
        f"attacker uses it; clean-pair accuracy {results['clean_accuracy_E2']:.2f}%). Stored templates: the first "
        f"image of each of the {results['n_pairs']} pairs ({protocol_source(fc)}); probes: the second. The "
        f"defender's shadow decoder (MLPDecoder {fc['shadow_hidden']}) and every attacker train on "
        f"`{fc['train_images']}`, disjoint from the evaluated images. AdvFace eps "
        f"{fc['eps']:.4g}, {fc['steps']} steps, random start. Identity inference = the reconstruction is "
        f"accepted as the person against the pair's probe (E2 at its threshold {results['threshold_E2']:.3f} on "
        f"{first.get('judged_pairs')} pairs; E at the system threshold {results['threshold_E']:.3f} on "
        f"{first['pairs']}). Each cell: **E2 / E** (%). The wrong-person floor (a reconstruction accepted as "
        f"another person, E2) is at most {floor:.1f}% in every cell: nothing below it means anything. The "
        f"optimisation attack runs on {cfg['optimisation_people']} people ({cfg['optimisation_steps']} Adam "
        f"steps through E's graph in torch) and only where the attacker has a template to match.",
        *judge_warning(results.get("clean_accuracy_E2")),
        "",
        "## Attackers and what they know",
        "",
    ]
    lines += _table(["attack", "knowledge"], [[a, results["knowledge"][a]] for a in attacks])
    lines += ["", "## What each defence costs in verification (stored vs fresh probe; accuracy over 10 folds, %)", ""]
    lines += utility_table(util, defences)
    lines += ["", "## Identity inference, E2 / E (%)", "", "Rows: attacks; columns: defences.", ""]
    lines += _table(["attack", *defences], [[a, *[_cell(table[d].get(a)) for d in defences]] for a in attacks])
    lines += ["", "## SSIM of reconstructions to the enrolled face", ""]
    lines += _table(
        ["attack", *defences],
        [[a, *[f"{table[d][a]['ssim']:.3f}" if a in table[d] else "-" for d in defences]] for a in attacks],
    )
    lines += [
        "",
        "## Attacks on the rotation's key",
        "",
        "Each estimate of the rotation is undone on the stolen gallery, then the attack that fits what it "
        "recovers runs: the identity-loss decoder on clean templates (rotation alone), the purifier (own "
        "shadow) + identity-loss decoder on AdvFace templates. Known pairs: the attacker's own training faces "
        "enrolled through the system (an insider). Moment alignment: the stolen gallery's covariance "
        "eigenvectors matched to those of the attacker's own templates (no pairs). Score oracle: the attacker "
        "submits its own faces as probes for a claimed identity and reads the matcher's rounded cosine score; "
        "the scores are linear in the unrotated template. Rotation error: ||Q^ - Q||_F / sqrt(2D) "
        "(0 = recovered, about 1 = unrelated).",
        "",
    ]
    lines += _table(
        ["defence", "attack on the key", "rotation error", "identity inference E2 / E (%)", "SSIM"],
        [
            [r["defence"], r["attack"], r["rotation_error"], _cell(r), f"{r['ssim']:.3f}"]
            for r in results["key_recovery"]
        ],
    )
    lines += [
        "",
        "## Unlinkability: the same photos enrolled in two systems under two keys",
        "",
        "Mated comparisons: two photos of one person, one from each system; non-mated: two people. D_sys "
        "(Gomez-Barrero et al. 2018, computed by `audmetric.linkability`): 0 = the scores cannot link "
        "records, 1 = they always can. Estimator floor: the same estimate for two groups of non-mated "
        "scores (nothing to link), the histogram estimator's own bias at these counts; comparisons: mated / "
        "non-mated.",
        "",
    ]
    lines += _table(
        ["systems", "D_sys", "estimator floor", "mean mated cosine", "mean non-mated cosine", "comparisons"],
        [
            [
                n,
                f"{v['d_sys']:.3f}",
                f"{v['d_sys_floor']:.3f}",
                f"{v['mated_mean']:.3f}",
                f"{v['non_mated_mean']:.3f}",
                f"{v['mated']} / {v['non_mated']}",
            ]
            for n, v in results["unlinkability"].items()
        ],
    )
    lines += [
        "",
        f"Total time: {results['seconds']:.0f} s (with the caches it had). "
        + command_sentence({**results, "command": command or results.get("command")}),
        "",
        data_credit(fc),
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
