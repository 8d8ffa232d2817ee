"""The insider's estimates under each key mode, inverted to faces and judged by the independent judge.

``insider_key_modes.py`` judges the insider's estimated templates with E itself (template level).
Here the same estimates go through the strongest decoder of the real-faces evaluation (``conv+id``:
the conv decoder fine-tuned with the identity loss through E, trained on the attacker's CelebA
photos) and the reconstructions are judged by dlib's ResNet (E2), which neither side uses: the
eval-faces protocol (600 privacy pairs of LFW, each reconstruction against the victim's other
photo; the wrong-person floor against other people's photos). The estimate of a record keeps the
record's norm (a rotation does not change it, so the attacker reads it off).

Attacks (knowledge as in ``insider_key_modes.py``): known pairs (accomplices), a labelled public set
sharing 100% of the people (two-fold cross-fitted), and both together (1,000 accomplices and the
public set: the strongest attacker, without the unpaired alignments, which fail on real
templates); the first row decodes the clean templates (the key stolen: the ceiling).

``--attacker eot`` puts the strongest inverter of the real-faces evaluation after the decoder:
white-box optimisation through E over random views, from the decoder's guess
(``advface_fast/eval/threat/eot_optimisation.py``); it costs about 1 s a face for 25 steps, so that
run judges fewer people and fewer rows:

    python benchmarks/insider_key_modes_judged.py --out-dir benchmarks/results/insider-key-modes-judged-lfw
    python benchmarks/insider_key_modes_judged.py --attacker eot --people-per-fold 30 --pairs 0 64 \
        --pairs-under system --no-public --out-dir benchmarks/results/insider-key-modes-judged-eot-lfw

The decoder and the judge come from the eval-faces cache (as ``step_variants.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from faces_setup import EVAL_LFW_CONFIG, conv_attackers
from insider_key_modes import attack, faces_world, modes, public_labelled
from machine import run_header

from advface_fast.encoders.base import differentiable
from advface_fast.eval.faces import _operating_sets, attack_scores
from advface_fast.eval.threat.eot_optimisation import EOTOptimisationAttack

PAIRS = (0, 64, 1000, 3000)
COMBINED = 1000  # the strongest attacker: this many accomplices beside a public set sharing every person


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(EVAL_LFW_CONFIG), help="FacesEvalConfig JSON (default: the eval-lfw one)")
    ap.add_argument("--pairs", type=int, nargs="+", default=list(PAIRS))
    ap.add_argument("--shards", type=int, nargs="+", default=[16, 256, 4096])
    ap.add_argument("--attacker", choices=["conv+id", "eot"], default="conv+id", help="the inverter (see above)")
    ap.add_argument("--eot-steps", type=int, default=25, help="Adam steps of the eot attacker")
    ap.add_argument("--people-per-fold", type=int, default=None, help="privacy pairs per fold (default: the config's)")
    ap.add_argument("--pairs-under", choices=["all", "system"], default="all", help="modes with known-pair rows")
    ap.add_argument("--no-public", action="store_true", help="leave out the public-set-only rows")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out_dir)
    people = args.people_per_fold
    per_fold = {} if people is None else {"privacy_per_fold": people, "judge_per_fold": people}
    cfg, data, _, attackers = conv_attackers(args.config, out, args.cache_dir, False, **per_fold)
    decoder = attackers["conv+id"]
    if args.attacker == "eot":
        shape = (3, cfg.size, cfg.size)
        decoder = EOTOptimisationAttack("eot", differentiable(data.encoder), shape, decoder, args.eot_steps)
    tag = args.attacker if args.attacker == "conv+id" else f"conv+id+eot{args.eot_steps}"
    g = _operating_sets(data)[0]
    w = faces_world(cfg, data, max([*args.pairs, COMBINED]))
    victims, accomplices, own, public = w.victims, w.accomplices, w.own, w.public
    norms = data.z_test[g].double().norm(dim=1, keepdim=True)
    unit = torch.nn.functional.normalize
    rows = []

    def judge(mode: str, attack_name: str, n: int, est: torch.Tensor) -> None:
        t = time.time()
        templates = data.z_test.clone()
        templates[torch.from_numpy(g)] = (unit(est, dim=1) * norms).to(templates.dtype)
        res, _ = attack_scores(data, decoder, templates, False, f"{tag}|insider-{mode}-{attack_name}-{n}")
        row = {**res, "mode": mode, "attack": attack_name, "known_pairs": n, "seconds": time.time() - t}
        rows.append(row)
        print(
            f"{mode:18} {attack_name:34} {n:5} pairs: judge E2 {row['identity_inference_E2']:5.1f}% "
            f"(wrong person {row['wrong_person_E2']:.1f}%), E {row['identity_inference_E']:5.1f}%, "
            f"SSIM {row['ssim']:.3f} ({row['seconds']:.0f} s)",
            flush=True,
        )

    judge("key stolen", "clean templates", 0, victims)
    for name, mode in modes(args.shards).items():
        if args.pairs_under == "all" or name == "system-wide key":
            for n in [n for n in args.pairs if n <= len(accomplices)]:
                judge(name, "known pairs", n, attack(mode, victims, accomplices, own, n, cfg.seed + n))
        if not args.no_public:
            shared = public_labelled(mode, victims, public, 1.0, own, cfg.seed + 1)
            judge(name, "public set, labelled, 100% shared", 0, shared)
        both = public_labelled(mode, victims, public, 1.0, own, cfg.seed + 2, accomplices[:COMBINED])
        judge(name, "accomplices + public set, labelled, 100% shared", COMBINED, both)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        **run_header(),
        "protocol": cfg.pairs,
        "encoder": cfg.encoder,
        "judge": cfg.judge,
        "decoder": tag,
        "judged_pairs": rows[0].get("judged_pairs"),
        "rows": rows,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'results.json'} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
