"""The threat-model suite on real faces (by default LFW with SFace), every identity figure also
judged by dlib.

World (as ``eval-faces``, whose data, shadow decoder and attackers it reuses from the cache): the
enrolled templates are the first images of the protocol's pairs under E (by default LFW's, under
SFace), probes the second images; the defender and the attackers train on the training faces (by
default the CelebA subset). The defender's shadow decoder is its own (never published); "shadow
leaked" attacks hold it. Defences (``unprotected``, AdvFace with the public seed, AdvFace with a
secret key, the keyed rotation alone, AdvFace with key and rotation) are crossed with attacks that
know the method (purifiers trained on the attacker's own training-face templates protected by the
package, white-box optimisation through E) and the naive ones; then the attacks on the rotation's
key (known pairs, distribution alignment, a score oracle) and unlinkability across two keys.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...encoders.base import differentiable
from ...errors import PublicRandomnessWarning
from ...models.decoders import MLPDecoder
from ...protector import protect
from ...rotation import keyed_rotation, rotate
from ..config import config_from_json
from ..faces import FacesEvalConfig, prepare
from ..faces_models import train_cached
from ..unlinkability import cross_pairs, linkability
from .base import DEFENDER_KEY, Knowledge
from .decoder_attack import DecoderAttack
from .driver import AttackRun, Defence, cross
from .key_recovery import moment_alignment, oracle_scores, score_oracle
from .optimisation import OptimisationAttack
from .procrustes import procrustes, rotation_error
from .purifier import PurifierAttack, fit_purifier
from .worlds import FacesThreatWorld

OTHER_KEY = b"a-second-system-with-its-own-key"  # unlinkability: the same people enrolled elsewhere

# the data, encoder, shadow decoder and attackers of the committed LFW evaluation (its cache applies)
LFW_EVAL = {
    "attackers": ["mlp_wide"],
    "attacker_epochs": 12,
    "attacker_epochs_by_name": {"conv": 4},
    "identity_attacker": "conv",
    "identity_steps": 150,
    "privacy_per_fold": 60,
    "judge_per_fold": 20,
}


@dataclass
class FacesThreatConfig:
    faces: dict[str, Any] = field(default_factory=lambda: dict(LFW_EVAL))  # FacesEvalConfig settings
    own_shadow_hidden: list[int] = field(default_factory=lambda: [1024])  # the attacker's shadow (GELU)
    own_shadow_epochs: int = 12
    purifier_epochs: int = 30
    optimisation_people: int = 20
    optimisation_steps: int = 100
    procrustes_pairs: list[int] = field(default_factory=lambda: [32, 128, 256, 1024])
    oracle_queries: list[int] = field(default_factory=lambda: [128, 256])
    oracle_decimals: int = 2
    note: str = ""

    @classmethod
    def from_json(cls, path: str | Path | None) -> FacesThreatConfig:
        return config_from_json(cls, path)

    def faces_config(self) -> FacesEvalConfig:
        unknown = set(self.faces) - set(FacesEvalConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"faces: unknown settings {sorted(unknown)}")
        return FacesEvalConfig(**self.faces)


def run_faces_threat_suite(
    cfg: FacesThreatConfig,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Cross the defences with the attacks on real faces; write ``report.md`` and ``results.json``.
    ``command``: the command line that ran it, stated in the report (the CLI passes it)."""
    with warnings.catch_warnings():  # the public-seed configuration is measured on purpose
        warnings.simplefilter("ignore", PublicRandomnessWarning)
        return _run(cfg, Path(out_dir), cache_dir, log, progress, command)


def _run(cfg: FacesThreatConfig, out: Path, cache_dir, log, progress, command: str | None) -> dict[str, Any]:
    t0 = time.time()
    fc = cfg.faces_config()
    data, shadow, attackers = prepare(fc, out, cache_dir, log, progress)
    world = FacesThreatWorld(data, progress)
    z, dim, shape = data.z_test, data.z_test.shape[1], (3, fc.size, fc.size)
    fc = fc.for_dim(dim)
    rows = torch.from_numpy(data.enrolled)
    p = data.protocol
    id_name = f"{fc.identity_attacker}+id"
    id_decoder, l1_name = attackers[id_name], fc.attackers[0]

    def advface(v, shadow_model, key=None, row_ids=None, eps=fc.eps, seed=fc.seed):
        return protect(
            v, shadow_model, eps=eps, alpha=eps * fc.alpha_ratio, steps=fc.steps, seed=seed, key=key,
            row_ids=row_ids, progress=False,
        )  # fmt: skip

    def stored_with(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        s = z.clone()
        s[rows] = fn(z[rows])
        return s

    rot = lambda v, k=DEFENDER_KEY: rotate(v, k)  # noqa: E731
    # every test photo under the defender's key (row id = photo index; a row's result depends only
    # on the row, its id and the settings): the stored gallery here, system A of unlinkability below
    adv_k1 = advface(z, shadow, DEFENDER_KEY, torch.arange(len(z)))
    keyed = stored_with(lambda v: adv_k1[rows])
    unprotected = Defence("unprotected", z, z)
    advface_key = Defence("AdvFace + secret key", keyed, z)
    rotation_alone = Defence("keyed rotation alone", stored_with(rot), rot(z))
    advface_key_rotation = Defence("AdvFace + secret key + keyed rotation", rot(keyed), rot(z))
    defences = [
        unprotected,
        Defence("AdvFace default (public seed)", stored_with(lambda v: advface(v, shadow, None, rows)), z),
        advface_key,
        rotation_alone,
        advface_key_rotation,
    ]
    log(f"defences applied ({time.time() - t0:.0f} s)")

    # ---- the attacks that know the method: purifiers on the attacker's own (training-face) templates
    own = data.z_train
    own_shadow = train_cached(
        "attacker-shadow-gelu",
        lambda: MLPDecoder(dim, cfg.own_shadow_hidden, shape, act="gelu"),
        data, fc, cfg.own_shadow_epochs, log, progress,
    )  # fmt: skip
    emul = {
        "leaked": advface(own, shadow),  # the defender's shadow decoder, stolen with the database
        "own": advface(own, own_shadow),
        "wrong": advface(own, own_shadow, eps=fc.eps / 2, seed=7),
    }
    purifiers = {k: fit_purifier(v, own, epochs=cfg.purifier_epochs, seed=fc.seed)[0] for k, v in emul.items()}
    log(f"purifiers fitted ({time.time() - t0:.0f} s)")
    wb = "white-box"
    # the strongest attack on AdvFace, and the one the key attacks below hand their estimate to
    purified_own = PurifierAttack(
        "purifier (own shadow) + identity-loss decoder", purifiers["own"], id_decoder,
        Knowledge(encoder=wb, algorithm=True, settings="right", shadow="own"),
    )  # fmt: skip
    id_attack = DecoderAttack("identity-loss decoder (naive)", id_decoder, Knowledge(encoder=wb))
    attacks = [
        DecoderAttack(f"L1 decoder ({l1_name}, naive)", attackers[l1_name], Knowledge(encoder="black-box")),
        id_attack,
        PurifierAttack(
            "purifier (shadow leaked) + identity-loss decoder", purifiers["leaked"], id_decoder,
            Knowledge(encoder=wb, algorithm=True, settings="right", shadow="the defender's (leaked)"),
        ),
        purified_own,
        PurifierAttack(
            "purifier (own shadow, wrong settings) + identity-loss decoder", purifiers["wrong"], id_decoder,
            Knowledge(encoder=wb, algorithm=True, settings="wrong (eps/2, seed 7)", shadow="own"),
        ),
    ]  # fmt: skip
    optim = OptimisationAttack(
        "white-box optimisation through E from the identity-loss decoder's guess", differentiable(data.encoder),
        shape, prior=id_decoder, steps=cfg.optimisation_steps,
    )  # fmt: skip
    # slow on CPU: fewer people, all judged by E2; and only where the stored template is in E's space
    runs = [
        *map(AttackRun, attacks),
        AttackRun(optim, people=cfg.optimisation_people, under=(unprotected, advface_key)),
    ]
    crossed = cross(world, defences, runs, log)

    # ---- attacks on the rotation's key, each followed by the attack that fits what it recovers
    q = keyed_rotation(DEFENDER_KEY, dim)
    # what the unrotated templates need: clean -> the decoder; AdvFace -> purifier first
    best = {rotation_alone: id_attack, advface_key_rotation: purified_own}
    insider_rows = torch.arange(10**7, 10**7 + len(own))  # the attacker's own enrolments (other row ids)
    own_stored = {
        rotation_alone: rot(own),
        advface_key_rotation: rot(advface(own, shadow, DEFENDER_KEY, insider_rows)),
    }
    recovery = []
    for defence, attack in best.items():
        stored = defence.stored
        gallery = stored[rows]
        estimates: list[tuple[str, str, torch.Tensor]] = [("key stolen", "none", stored @ q.float())]
        for n in cfg.procrustes_pairs:
            qh = procrustes(own[:n], own_stored[defence][:n])
            estimates.append((f"Procrustes, {n} known pairs", f"{rotation_error(qh, q):.3f}", stored @ qh.float()))
        qh = moment_alignment(own, gallery)
        estimates.append(("moment alignment (no pairs)", f"{rotation_error(qh, q):.3f}", stored @ qh.float()))
        for n in cfg.oracle_queries:
            recovered = stored.clone()
            recovered[rows] = score_oracle(own[:n], oracle_scores(own[:n], gallery, q, cfg.oracle_decimals))
            estimates.append(
                (f"score oracle, {n} queries per template ({cfg.oracle_decimals} decimals)", "-", recovered)
            )
        for label, err, unrotated in estimates:
            r = world.score(attack, unrotated, None, f"key|{label}|{defence.name}")
            recovery.append({"defence": defence.name, "attack": label, "rotation_error": err, **r})
            log(f"{defence.name} / {label}: E2 inference {r['identity_inference_E2']:.1f}% (error {err})")

    # ---- unlinkability: the same photos enrolled in two systems with two keys
    a, b, mated = cross_pairs(p.person, fc.seed)
    adv_k2 = advface(z, shadow, OTHER_KEY, torch.arange(len(z)))
    both_keys_rotated = (rot(adv_k1), rot(adv_k2, OTHER_KEY))
    systems = {
        "unprotected (both systems store E(x))": (z, z),
        "AdvFace, two keys": (adv_k1, adv_k2),
        "keyed rotation, two keys": (rot(z), rot(z, OTHER_KEY)),
        "AdvFace + keyed rotation, two keys": both_keys_rotated,
    }
    link = {name: linkability(sa, sb, a, b, mated) for name, (sa, sb) in systems.items()}
    sa, sb = both_keys_rotated
    aligned = (sb.double() @ moment_alignment(sa, sb)).float()  # B mapped onto A's space, no pairs
    link["AdvFace + keyed rotation, two keys, after moment alignment"] = linkability(sa, aligned, a, b, mated)
    for name, v in link.items():
        log(f"linkability {name}: D_sys {v['d_sys']:.3f}")

    results = {
        "config": asdict(cfg),
        "faces_config": asdict(fc),
        "encoder": data.encoder.fingerprint(),
        "judge": data.judge.fingerprint(),
        "threshold_E": data.threshold,
        "threshold_E2": data.e2_threshold,
        "clean_accuracy_E2": data.e2_clean_acc,
        "n_pairs": len(p.first),
        **crossed,
        "key_recovery": recovery,
        "unlinkability": link,
        "command": command,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from .faces_report import write_faces_threat_report

    write_faces_threat_report(results, out, command)
    log(f"wrote {out}/report.md and results.json in {time.time() - t0:.0f} s")
    return results
