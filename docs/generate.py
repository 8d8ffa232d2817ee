"""Write the result tables of the docs (and the README's index of results) from the committed
``benchmarks/results/*/results.json`` (the performance page has its own generator, ``benchmarks/perf_report.py``).

    python docs/generate.py            # rewrite every generated block in place
    python docs/generate.py --check    # exit 1 if a page is out of date with its results

A generated block sits between ``<!-- generated:NAME begin -->`` and ``<!-- generated:NAME end -->``;
:data:`BLOCKS` says which page holds it and which function writes it. ``tests/test_docs.py`` runs
the check, so a result that changes without its page (or a page edited by hand inside a block)
fails the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advface_fast.eval.faces_report import paper_figure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name / "results.json").read_text())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
    ]


def _pct(v: float | None) -> str:
    """A percentage, or n/a where the run had too few impostor pairs to measure it."""
    return "n/a" if v is None else f"{v:.1f}"


def _ran(r: dict[str, Any], path: str) -> str:
    """Where a benchmark's numbers come from: its machine, its command and its committed results."""
    return f"{r['machine']}; `{r['command']}`; [`{path}`](../{path})."


def _source(name: str) -> str:
    folder = f"benchmarks/results/{name}/"
    return f"From [`{folder}`](../{folder}) (`results.json`; its report has the command)."


# ---------------------------------------------------------------------------------- evaluations
def faces_eval_table(name: str, attackers: list[str]) -> list[str]:
    """A real-faces evaluation: cost (best-threshold accuracy, TAR at FAR 1e-3 at the threshold
    re-fitted per method, cosine to the clean template) and identity inference of ``attackers``
    judged by E and E2; the paper's LFW figures only beside a pairs protocol."""
    r = _load(name)
    util, priv = r["utility"], r["privacy"]
    lfw = not r["config"].get("test_folder")
    impostors = next(iter(util.values()))["impostor_pairs"]
    header = ["method", "accuracy (%)", *(["paper"] if lfw else [])]
    header += [f"TAR at FAR 1e-3 (%; {impostors:,} impostor pairs)", "mean cosine to the clean template"]
    header += [f"{a}: E / E2 (%)" for a in attackers] + (["paper"] if lfw else [])
    rows = []
    for m in util:
        u = util[m]
        tar = _pct(u.get("tar_at_far_1e-3"))
        cells = [
            m,
            f"{u['acc']:.2f} ± {u['acc_std']:.2f}",
            *([paper_figure(m, "accuracy", r["paper_lfw"])] if lfw else []),
        ]
        cells += [tar, f"{u['mean_cosine_to_clean']:.3f}"]
        for a in attackers:
            p = priv[m][a]
            e2 = f"{p['identity_inference_E2']:.1f}" if "identity_inference_E2" in p else "-"
            cells.append(f"{p['identity_inference_E']:.1f} / {e2}")
        if lfw:
            cells.append(paper_figure(m, "identity_inference", r["paper_lfw"]))
        rows.append(cells)
    judge = r.get("judge") or {}
    return [
        *_table(header, rows),
        "",
        f"E = `{r['encoder']['name']}` at its threshold fitted on clean pairs, E2 = `{judge.get('name', '-')}` "
        f"(clean-pair accuracy {r.get('clean_accuracy_E2') or float('nan'):.2f}%); {r['n_pairs']:,} pairs. "
        "Accuracy is 10-fold with the threshold re-fitted per fold (the paper's protocol, not a deployed "
        "system's); TAR is at a threshold fitted per method. " + _source(name),
    ]


# ------------------------------------------------------------------------------------- threats
def threat_table(name: str) -> list[str]:
    """Identity inference by the independent judge (E2) of every attack under every defence, and
    the verification accuracy of each defence."""
    r = _load(name)
    defences = list(r["utility"])
    attacks = list(dict.fromkeys(a for d in defences for a in r["attacks"][d]))

    def cell(d: str, a: str) -> str:
        c = r["attacks"][d].get(a)
        return "-" if c is None else f"{c['identity_inference_E2']:.1f}"

    rows = [[a, *[cell(d, a) for d in defences]] for a in attacks]
    rows.append(["verification accuracy (%)", *[f"{r['utility'][d]['acc']:.2f}" for d in defences]])
    if all("operating_point" in r["utility"][d] for d in defences):
        for which, label in (("at_clean_threshold", "clean threshold"), ("refit", "re-fitted")):
            cells = [f"{100 * r['utility'][d]['operating_point']['0.001'][which]['tar']:.2f}" for d in defences]
            rows.append([f"TAR at FAR 1e-3, {label} (%)", *cells])
    floor = (
        f"chance (an impostor pair accepted by E2): {r['chance_E2']:.1f}%"
        if "chance_E2" in r
        else "read against the wrong-person floor in the report"
    )
    return [
        *_table(["attack", *defences], rows),
        "",
        f"Identity inference judged by E2 (%), {floor}; E2 clean accuracy {r['clean_accuracy_E2']:.2f}%. "
        "'-': not run under that defence. " + _source(name),
    ]


def key_recovery_table(name: str) -> list[str]:
    """The attacks on the rotation's key, by defence (real-faces suites), or against the number of
    known pairs (the synthetic suite)."""
    r = _load(name)
    rec = r["key_recovery"]
    if rec and "defence" in rec[0]:
        defences = list(dict.fromkeys(x["defence"] for x in rec))
        attacks = list(dict.fromkeys(x["attack"] for x in rec))
        by = {(x["defence"], x["attack"]): x for x in rec}
        rows = [
            [a, *[f"{by[(d, a)]['identity_inference_E2']:.1f}" if (d, a) in by else "-" for d in defences]]
            for a in attacks
        ]
        return [*_table(["attack on the key", *defences], rows), "", "Identity inference by E2 (%). " + _source(name)]
    rows = [[str(x["known_pairs"]), f"{x['rotation_error']:.3f}", f"{x['identity_inference_E2']:.1f}"] for x in rec]
    return [
        *_table(["known pairs", "rotation error", "identity inference by E2 (%)"], rows),
        "",
        "Procrustes from the attacker's own enrolments, then its strongest attack. " + _source(name),
    ]


# ------------------------------------------------------------------------------ README's index
def results_index() -> list[str]:
    """One row per committed evaluation and threat run: what it measured and its headline numbers."""
    rows = []
    for name in ("eval-lfw", "eval-lfw-mobilefacenet", "eval-celeba-folders-mobilefacenet"):
        r = _load(name)
        u, p = r["utility"], r["privacy"]
        strongest = max(p["Unprotected"], key=lambda a: p["Unprotected"][a]["identity_inference_E"])
        default = next(m for m in u if "package default" in m)
        rows.append(
            [
                f"[{name}](benchmarks/results/{name}/report.md)",
                f"E = {r['encoder']['name']}, judge {r['judge']['name']}",
                f"accuracy {u['Unprotected']['acc']:.2f} -> {u[default]['acc']:.2f}; TAR@FAR 1e-3 "
                f"{_pct(u['Unprotected']['tar_at_far_1e-3'])} -> {_pct(u[default]['tar_at_far_1e-3'])}; {strongest} "
                f"E2 {p['Unprotected'][strongest]['identity_inference_E2']:.1f} -> "
                f"{p[default][strongest]['identity_inference_E2']:.1f}",
            ]
        )
    for name in ("threat-synthetic", "threat-lfw", "threat-lfw-mobilefacenet", "threat-celeba-folders-mobilefacenet"):
        r = _load(name)

        defences = list(r["utility"])
        strongest = {d: max(c["identity_inference_E2"] for c in r["attacks"][d].values()) for d in defences}
        shown = (defences[0], defences[1], defences[-1])  # unprotected, AdvFace alone, the full defence
        rows.append(
            [
                f"[{name}](benchmarks/results/{name}/report.md)",
                "attackers who know the method; the strongest attack's E2",
                "; ".join(f"{d} {strongest[d]:.1f}" for d in shown),
            ]
        )
    header = ["run", "what", "headline (evaluations: unprotected -> package default; E2 = the independent judge, %)"]
    return [*_table(header, rows), "", "n/a: too few impostor pairs to measure FAR 1e-3."]


def match_latency_table() -> list[str]:
    """Per-probe latency of the matcher's decisions (``benchmarks/match_latency.py``)."""
    r = json.loads((RESULTS / "match_latency_cpu.json").read_text())
    rows = [
        [
            f"{x['gallery']:,}",
            x["kind"],
            f"{x['build_s']:.2f} s",
            f"{x['transform_ms']:.3f}",
            f"{x['verify_ms']:.3f}",
            f"{x['identify_ms']:.3f}",
            f"{100 * x['transform_share_identify']:.1f}%",
        ]
        for x in r["rows"]
    ]
    header = ["gallery", "held as", "build", "probe transform ms", "verify ms", "identify ms", "transform share"]
    return [
        *_table(header, rows),
        "",
        f"Medians of {r['probes']} single-probe calls; {r['machine']}; `{r['command']}`; raw numbers in "
        "[`benchmarks/results/match_latency_cpu.json`](../benchmarks/results/match_latency_cpu.json).",
    ]


def service_oracle_table() -> list[str]:
    """Identity inference from the service's answers against queries per target
    (``benchmarks/service_oracle_attack.py``)."""
    r = _load("service-oracle-lfw")
    rows = []
    for name, key in (("scores", "score_oracle"), ("decisions only", "decisions_only")):
        for q, x in r[key].items():
            cos, hours = x.get("cosine_to_stored"), x.get("hours_at_default_budget")
            cells = [name, f"{int(q):,}", f"{x['identity_inference']:.1f}", f"{x['wrong_person']:.1f}"]
            cells += ["-" if cos is None else f"{cos:.3f}", "-" if hours is None else f"{hours:,.0f}"]
            rows.append([*cells, str(x["targets"])])
    b = r["decisions_default_budget_one_window"]
    cells = [f"decisions, default budget ({b['budget']}), one window", f"{b['queries_sent_per_target']:,} sent"]
    rows.append([*cells, f"{b['identity_inference']:.1f}", f"{b['wrong_person']:.1f}", "-", "1", str(b["targets"])])
    header = ["answers", "queries per target", "identity inference (%)", "wrong person (%)", "cosine to stored"]
    header += ["hours at 20/h", "targets"]
    ceiling = r["key_stolen_ceiling"]["identity_inference"]
    return [
        *_table(header, rows),
        "",
        f"Key stolen (the stored templates unrotated, the ceiling): {ceiling:.1f}%. "
        f"In one budget window the attacker got {b['answered']:,} answers and {b['refused_429']:,} refusals (429) "
        f"for {b['targets']} targets. Data: {r['data']}; defence: {r['defence']}; decisions at "
        f"{r['threshold_protected_far_1e-3']:.3f} (FAR 1e-3 on the protected gallery); judged by E at the clean "
        f"system's FAR-1e-3 threshold {r['judge_threshold_clean_far_1e-3']:.3f}. "
        + _ran(r, "benchmarks/results/service-oracle-lfw/"),
    ]


def match_load_table() -> list[str]:
    """p50/p99 and throughput of the service's endpoints (``benchmarks/match_load.py``)."""
    r = json.loads((RESULTS / "match_load_cpu.json").read_text())
    rows = [
        [
            f"{x['gallery']:,}",
            f"/{x['endpoint']}",
            str(x["concurrency"]),
            f"{x['requests_per_s']:.1f}",
            f"{x['p50_ms']:.1f}",
            f"{x['p99_ms']:.1f}",
            f"{x['requests']} / {x['errors']}",
        ]
        for x in r["rows"]
    ]
    header = ["gallery", "endpoint", "clients", "requests/s", "p50 ms", "p99 ms", "requests / errors"]
    builds = ", ".join(f"{int(k):,}: {v:.0f} s" for k, v in r["gallery_build_seconds"].items())
    return [
        *_table(header, rows),
        "",
        f"Gallery builds (`advface-fast index`, protection included): {builds}. {r['machine']}; `{r['command']}`; raw "
        "numbers in [`benchmarks/results/match_load_cpu.json`](../benchmarks/results/match_load_cpu.json).",
    ]


def operating_point_sweep_table(name: str) -> list[str]:
    """TAR at FAR 1e-3 and 1e-4, at the clean threshold and re-fitted, over an eps sweep
    (``benchmarks/operating_point_sweep.py``)."""
    r = _load(name)
    rows = []
    for x in r["rows"]:
        op = x["operating_point"]
        cells = [x["method"], f"{x['eps']:g}", f"{x['mean_cosine_to_clean']:.3f}"]
        for far in ("0.001", "0.0001"):
            o = op.get(far)
            cells += (
                [f"{100 * o['at_clean_threshold']['tar']:.2f}", f"{100 * o['refit']['tar']:.2f}"] if o else ["n/a"] * 2
            )
        rows.append(cells)
    first = r["rows"][0]["operating_point"]
    header = ["method", "eps", "mean cosine to clean", "TAR@1e-3 clean thr. (%)", "TAR@1e-3 re-fitted (%)"]
    header += ["TAR@1e-4 clean thr. (%)", "TAR@1e-4 re-fitted (%)"]
    return [
        *_table(header, rows),
        "",
        f"{r['encoder']}, {r['dim']}-d; {r['enrolled_files']:,} enrolled files x {r['probe_files']:,} probe files: "
        f"{first['genuine']:,} genuine and {first['impostors']:,} impostor scores. From "
        f"[`benchmarks/results/{name}/`](../benchmarks/results/{name}/) (`results.json`: the command, machine, "
        "versions and the FAR measured at each clean threshold).",
    ]


def insider_key_modes_table(name: str) -> list[str]:
    """An insider's known pairs against each key mode (``benchmarks/insider_key_modes.py``): rank-1
    identification and acceptance at the clean FAR-1e-3 threshold of the estimated templates."""
    r = _load(name)
    known = [x for x in r["rows"] if x["attack"] == "known pairs"]
    pairs = sorted({x["pairs"] for x in known})
    by = {(x["mode"], x["pairs"]): x for x in known}
    modes = list(dict.fromkeys(x["mode"] for x in r["rows"]))
    rows = [[m, *[_insider_cell(by.get((m, n))) for n in pairs]] for m in modes]
    return [
        *_table(["key mode", *[f"{n:,} pairs" for n in pairs]], rows),
        "",
        _insider_legend(r, name),
    ]


def _insider_cell(x: dict | None) -> str:
    return "-" if x is None else f"{x['rank1']:.1f} ({x['identity_inference']:.1f} / {x['wrong_person']:.1f})"


def _insider_legend(r: dict, name: str) -> str:
    if r.get("world") == "synthetic":
        who = (
            f"{r['victims']:,} held-out synthetic people ({r['encoder']}), accomplices and a prior of "
            f"{r['prior_templates']:,} from the attacker's identity range"
        )
    else:
        who = (
            f"{r['victims']:,} LFW victims ({r['encoder']}), accomplices from the CelebA subset, a prior of "
            f"{r['prior_templates']:,} CelebA templates"
        )
    return (
        f"Each cell: rank-1 identification of the victim among {r['probe_files']:,} probe photos (%), then (accepted "
        f"against the victim's photos / against other people's, % at the clean FAR-1e-3 threshold "
        f"{r['threshold_far_1e-3']:.3f}). {who}; template level (judge: E). " + _ran(r, f"benchmarks/results/{name}/")
    )


def insider_attacks_table(name: str) -> list[str]:
    """The insider's other levers against each key mode (``benchmarks/insider_key_modes.py``): a
    labelled public set sharing people, with and without accomplices, and unpaired alignments."""
    r = _load(name)
    other = [x for x in r["rows"] if x["attack"] != "known pairs"]
    modes = list(dict.fromkeys(x["mode"] for x in r["rows"]))
    attacks = list(dict.fromkeys((x["attack"], x["pairs"]) for x in other))
    by = {(x["mode"], x["attack"]): x for x in other}

    def label(attack: str, pairs: int) -> str:
        return f"{pairs:,} " + attack if pairs else attack

    rows = [[label(a, n), *[_insider_cell(by.get((m, a))) for m in modes]] for a, n in attacks]
    return [*_table(["attack", *modes], rows), "", _insider_legend(r, name)]


def insider_metrics_table(name: str) -> list[str]:
    """The standard metrics per key mode against the known pairs (``benchmarks/insider_key_modes.py``):
    SAR at FMR 0.1% and 0.01%, TPIR at FPIR 1%, D_sys."""
    r = _load(name)
    known = [x for x in r["rows"] if x["attack"] == "known pairs"]
    pairs = sorted({x["pairs"] for x in known})
    by = {(x["mode"], x["pairs"]): x for x in known}
    modes = list(dict.fromkeys(x["mode"] for x in known))
    metrics = [
        ("SAR @ FMR 0.1% (%)", "identity_inference", "{:.1f}"),
        ("SAR @ FMR 0.01% (%)", "sar_fmr_1e-4", "{:.1f}"),
        ("TPIR @ FPIR 1% (%)", "tpir_fpir_1e-2", "{:.1f}"),
        ("D_sys", "d_sys", "{:.2f}"),
    ]
    rows = [
        [m, label, *[fmt.format(by[(m, n)][key]) if (m, n) in by else "-" for n in pairs]]
        for m in modes
        for label, key, fmt in metrics
    ]
    return [
        *_table(["key mode", "metric", *[f"{n:,}" for n in pairs]], rows),
        "",
        "Columns: known pairs (accomplices). SAR: the estimate accepted against the victim's other photos at the "
        f"clean system's thresholds ({r['threshold_far_1e-3']:.3f} / {r['threshold_far_1e-4']:.3f}); TPIR: the "
        "victim's photo ranks first among every probe photo and scores above what 1% of non-mated searches reach; "
        f"D_sys: linkability of estimates to photos (its estimator's floor at these counts "
        f"{r['d_sys_floor']:.2f}). Template level (judge: E). " + _ran(r, "benchmarks/results/insider-key-modes-lfw/"),
    ]


def _inverter(tag: str) -> str:
    """What a judged benchmark's ``decoder`` tag names, in words."""
    if tag.startswith("conv+id+eot"):
        steps = tag.removeprefix("conv+id+eot")
        return f"the conv+id decoder's guess optimised through E over random views ({steps} Adam steps)"
    return f"the {tag} decoder"


def insider_judged_table(name: str = "insider-key-modes-judged-lfw") -> list[str]:
    """The insider's estimates inverted to faces and judged by the independent judge
    (``benchmarks/insider_key_modes_judged.py``; ``name``: its results folder)."""
    r = _load(name)
    columns = list(dict.fromkeys((x["attack"], x["known_pairs"]) for x in r["rows"] if x["mode"] != "key stolen"))
    by = {(x["mode"], x["attack"], x["known_pairs"]): x for x in r["rows"]}
    modes = list(dict.fromkeys(x["mode"] for x in r["rows"] if x["mode"] != "key stolen"))
    stolen = next(x for x in r["rows"] if x["mode"] == "key stolen")

    def cell(x: dict | None) -> str:
        return "-" if x is None else f"{x['identity_inference_E2']:.1f} ({x['wrong_person_E2']:.1f})"

    def head(attack: str, n: int) -> str:
        if attack == "known pairs":
            return f"{n:,} accomplices"
        return f"{n:,} " + attack if n else attack

    rows = [[m, *[cell(by.get((m, a, n))) for a, n in columns]] for m in modes]
    return [
        *_table(["key mode", *[head(a, n) for a, n in columns]], rows),
        "",
        f"Each cell: identity inference by the independent judge ({r['judge']}) of the insider's estimates inverted "
        f"by {_inverter(r['decoder'])}, % of {r['judged_pairs']} LFW privacy pairs (wrong-person floor in "
        f"brackets; '-': not run). With the key stolen (the clean templates inverted): {cell(stolen)}. "
        + _ran(r, f"benchmarks/results/{name}/"),
    ]


def key_modes_cost_table() -> list[str]:
    """1:N search cost of each key mode against the system-wide key (``benchmarks/key_modes_cost.py``)."""
    r = json.loads((RESULTS / "key_modes_cost_cpu.json").read_text())
    rows = [[x["mode"], str(x["batch"]), f"{x['ms_per_probe']:.2f}", f"{x['vs_system_key']:.2f}x"] for x in r["rows"]]
    return [
        *_table(["key mode", "probes per call", "ms per probe", "vs the system-wide key"], rows),
        "",
        f"Exact top-1 over {r['n']:,} records of {r['dim']}-d (float32; shard keys search them packed by shard, "
        "as the matcher holds them), best of repeats. "
        "Per-identity keys would need "
        f"{r['per_identity_keys_1n_multiply_adds_per_probe']:,} multiply-adds per probe "
        f"against {r['system_key_1n_multiply_adds_per_probe']:,}: not offered for 1:N. "
        + _ran(r, "benchmarks/results/key_modes_cost_cpu.json"),
    ]


def step_variants_table() -> list[str]:
    """AdvFace's step, uniform noise and the cosine cap at each budget: TAR and identity inference
    (``benchmarks/step_variants.py``)."""
    r = _load("step-variants-lfw")
    attackers = list(r["rows"][0]["attackers"])
    rows = []
    for x in r["rows"]:
        cells = [x["method"], f"{x['budget']:g}", f"{x['mean_cosine_to_clean']:.3f}"]
        cells += [f"{x['tar_at_clean_threshold']:.2f}", f"{x['tar_refit']:.2f}"]
        cells += [f"{x['genuine_shift']:+.3f}", f"{x['impostor_shift']:+.3f}"]
        cells += [f"{x['attackers'][a]['identity_inference_E2']:.1f}" for a in attackers]
        rows.append(cells)
    header = ["method", "budget", "cosine to clean", "TAR@1e-3 clean thr. (%)", "TAR@1e-3 re-fitted (%)"]
    header += ["genuine score shift", "impostor score shift", *[f"E2: {a} (%)" for a in attackers]]
    floor = r["rows"][0]["wrong_person_E2"]
    return [
        *_table(header, rows),
        "",
        f"Budget: eps for AdvFace and noise, the minimum cosine for the cap. {r['enrolled_templates']:,} enrolled LFW "
        f"files ({r['encoder']}); identity inference by the judge ({r['judge']}), wrong-person floor of the "
        f"unprotected row {floor:.1f}%. " + _ran(r, "benchmarks/results/step-variants-lfw/"),
    ]


BLOCKS: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "operating-point-lfw": ("docs/evaluation.md", lambda: operating_point_sweep_table("operating-point-lfw")),
    "operating-point-lfw-mobilefacenet": (
        "docs/evaluation.md",
        lambda: operating_point_sweep_table("operating-point-lfw-mobilefacenet"),
    ),
    "operating-point-celeba-folders": (
        "docs/evaluation.md",
        lambda: operating_point_sweep_table("operating-point-celeba-folders-mobilefacenet"),
    ),
    "step-variants": ("docs/evaluation.md", step_variants_table),
    "insider-key-modes": ("docs/threat-model.md", lambda: insider_key_modes_table("insider-key-modes-lfw")),
    "insider-attacks": ("docs/threat-model.md", lambda: insider_attacks_table("insider-key-modes-lfw")),
    "insider-metrics": ("docs/threat-model.md", lambda: insider_metrics_table("insider-key-modes-lfw")),
    "insider-synthetic": ("docs/threat-model.md", lambda: insider_key_modes_table("insider-key-modes-synthetic")),
    "insider-synthetic-attacks": (
        "docs/threat-model.md",
        lambda: insider_attacks_table("insider-key-modes-synthetic"),
    ),
    "insider-synthetic-metrics": (
        "docs/threat-model.md",
        lambda: insider_metrics_table("insider-key-modes-synthetic"),
    ),
    "insider-judged": ("docs/threat-model.md", insider_judged_table),
    "insider-judged-eot": ("docs/threat-model.md", lambda: insider_judged_table("insider-key-modes-judged-eot-lfw")),
    "key-modes-cost": ("docs/threat-model.md", key_modes_cost_table),
    "match-latency": ("docs/deployment.md", match_latency_table),
    "service-oracle": ("docs/deployment.md", service_oracle_table),
    "match-load": ("docs/deployment.md", match_load_table),
    "results-index": ("README.md", results_index),
    "eval-lfw": ("docs/evaluation.md", lambda: faces_eval_table("eval-lfw", ["conv+id"])),
    "eval-lfw-mobilefacenet": ("docs/evaluation.md", lambda: faces_eval_table("eval-lfw-mobilefacenet", ["conv+id"])),
    "eval-celeba-folders": (
        "docs/evaluation.md",
        lambda: faces_eval_table("eval-celeba-folders-mobilefacenet", ["mlp_wide", "conv+id"]),
    ),
    "threat-synthetic": ("docs/threat-model.md", lambda: threat_table("threat-synthetic")),
    "threat-synthetic-keys": ("docs/threat-model.md", lambda: key_recovery_table("threat-synthetic")),
    "threat-lfw": ("docs/threat-model.md", lambda: threat_table("threat-lfw")),
    "threat-lfw-keys": ("docs/threat-model.md", lambda: key_recovery_table("threat-lfw")),
    "threat-lfw-mobilefacenet": ("docs/threat-model.md", lambda: threat_table("threat-lfw-mobilefacenet")),
    "threat-celeba-folders": ("docs/threat-model.md", lambda: threat_table("threat-celeba-folders-mobilefacenet")),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name} begin (python docs/generate.py) -->", f"<!-- generated:{name} end -->"


def render(text: str, name: str, lines: list[str]) -> str:
    """``text`` with block ``name``'s content replaced by ``lines``; refuses a page without its markers."""
    begin, end = markers(name)
    a, b = text.find(begin), text.find(end)
    if a < 0 or b < a:
        raise ValueError(f"missing or misordered markers of generated block {name!r}")
    return text[: a + len(begin)] + "\n" + "\n".join(lines) + "\n" + text[b:]


def out_of_date() -> list[str]:
    """The blocks whose page differs from what their results give (names, with their page)."""
    stale = []
    for name, (page, make) in BLOCKS.items():
        text = (ROOT / page).read_text()
        if render(text, name, make()) != text:
            stale.append(f"{page}: {name}")
    return stale


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check that the pages match the results")
    args = p.parse_args()
    if args.check:
        stale = out_of_date()
        for s in stale:
            print(f"out of date: {s} (run python docs/generate.py)", file=sys.stderr)
        return 1 if stale else 0
    for name, (page, make) in BLOCKS.items():
        path = ROOT / page
        path.write_text(render(path.read_text(), name, make()))
    print(f"wrote {len(BLOCKS)} generated blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
