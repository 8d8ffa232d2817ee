"""An input-side method (:class:`~advface_fast.eval.methods.InputMethod`, e.g. DuetFace) through
the synthetic-world harness: the same enrolled people, pairs, attackers' data and judges as the
template rows of :mod:`.evaluate`, so its row sits beside AdvFace's.

- Training: the method on the shipped encoder's training faces (1,000 people x 16, validated on
  300 others), with its own budget (DuetFace: the shipped encoder's, per stage).
- Utility: 10-fold verification accuracy, TAR at FAR 1e-3 and rank-1 of fresh probes against the
  stored templates, both encoded by the method.
- Template attackers: decoders of the harness's architectures trained on the method's templates
  of the attacker's own faces (they know the method and query it on their faces), applied to the
  stored templates.
- Server-view attackers: what the server receives besides templates (DuetFace: the
  high-frequency channels of every enrolment and query) inverted by a learned convolutional
  inverter trained on the attacker's faces, and the plain inverse DCT with the client's channels
  zeroed (what a person sees in them).
- Judges: the shipped encoder E at its threshold against E's probe (the judge of every template
  row, so the columns compare), and the method's own model at its threshold against its probe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.world import IDS
from ..metrics import pair_distances, verification_accuracy
from .attackers import ChannelInverter, make_attacker
from .config import config_from_json
from .evaluate import EvalConfig, _World, score_reconstructions, utility
from .methods import METHODS, InputMethod
from .model_cache import cached_decoder


@dataclass
class InputEvalConfig:
    """Settings of an input-method evaluation (JSON config files override any of them)."""

    method: str = "DuetFace"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    train_ids: int = 1000  # the shipped encoder's training set: 1,000 people x 16 faces
    train_per_id: int = 16
    users: int = 500
    attacker_ids: int = 1000
    attacker_per_id: int = 8
    attacker_epochs: int = 10
    attackers: list[str] = field(default_factory=lambda: ["mlp_wide", "conv", "resup"])
    view_attacker_epochs: int = 10
    # the template harness's results.json whose rows go beside this method's in the report
    compare_with: str | None = "benchmarks/results/eval/results.json"
    seed: int = 0

    @classmethod
    def from_json(cls, path: str | Path | None) -> InputEvalConfig:
        return config_from_json(cls, path)


@torch.no_grad()
def _reconstruct(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(inputs[a : a + 256]) for a in range(0, len(inputs), 256)]).clamp(-1, 1)


def _judged(w: _World, method: InputMethod, rec: torch.Tensor, t_probe: torch.Tensor, thr: float) -> dict[str, float]:
    """:func:`~.evaluate.score_reconstructions` (judge E), and the method's own model as a second judge."""
    own = method.encode(rec)
    return {
        **score_reconstructions(w, rec),
        "identity_inference_own_model": 100 * float((pair_distances(own, t_probe) < thr).mean()),
    }


def evaluate_input_method(
    cfg: InputEvalConfig, out_dir: str | Path, cache_dir: str | Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the evaluation; writes ``report.md``, ``results.json`` and ``grid.png`` to ``out_dir``
    and keeps trained models in ``cache_dir``."""
    t0 = time.time()
    if cfg.method not in METHODS or METHODS[cfg.method].kind != "input":
        known = sorted(k for k, v in METHODS.items() if v.kind == "input")
        raise ValueError(f"unknown input method {cfg.method!r}; known: {known}")
    out, cache = Path(out_dir), Path(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    w = _World(EvalConfig(users=cfg.users, attacker_ids=cfg.attacker_ids, attacker_per_id=cfg.attacker_per_id))
    m = w.models
    method: InputMethod = METHODS[cfg.method](seed=cfg.seed, **cfg.method_kwargs)  # type: ignore[call-arg]
    x_tr, y_tr = m.world.dataset(cfg.train_ids, cfg.train_per_id, id_offset=IDS["train"])
    val = m.world.dataset(min(300, cfg.users), 10, id_offset=IDS["encoder_val"])
    t = time.time()
    history = method.fit(x_tr, y_tr, val, cache, log)
    fit_s = time.time() - t
    del x_tr, y_tr
    ids = torch.arange(IDS["heldout"], IDS["heldout"] + cfg.users)
    x_probe = m.world.render(ids, torch.ones_like(ids))
    t_enrol, t_probe = method.encode(w.x_enrol), method.encode(x_probe)
    _, _, thr = verification_accuracy(pair_distances(t_enrol[w.pi], t_probe[w.pj]), w.same)
    threshold = float(np.median(thr))
    util = utility(w, t_enrol, t_probe)
    log(f"{cfg.method}: accuracy {util['acc']:.2f} +- {util['acc_std']:.2f} (fit {fit_s:.0f} s)")

    privacy: dict[str, dict[str, float]] = {}
    recs: dict[str, torch.Tensor] = {}
    t_att = method.encode(w.x_att)
    tag = f"{cfg.method}-{cfg.attacker_ids}x{cfg.attacker_per_id}"
    for name in cfg.attackers:
        model = cached_decoder(
            cache / f"{tag}-template-{name}-e{cfg.attacker_epochs}.safetensors",
            lambda name=name, d=t_att.shape[1]: make_attacker(name, d, tuple(w.x_att.shape[1:])),
            t_att,
            w.x_att,
            epochs=cfg.attacker_epochs,
            seed=cfg.seed + 7,
            label=f"{cfg.method} template attacker {name}",
            log=log,
        )
        recs[f"template: {name}"] = _reconstruct(model, t_enrol)
        privacy[f"template attacker {name}"] = _judged(w, method, recs[f"template: {name}"], t_probe, threshold)
    del t_att
    view_enrol = method.server_view(w.x_enrol)
    if view_enrol is not None:
        v_att = method.server_view(w.x_att)
        inverter = cached_decoder(
            cache / f"{tag}-view-inverter-e{cfg.view_attacker_epochs}.safetensors",
            lambda: ChannelInverter(v_att.shape[1], v_att.shape[2], tuple(w.x_att.shape[1:])),
            v_att,
            w.x_att,
            epochs=cfg.view_attacker_epochs,
            seed=cfg.seed + 8,
            label=f"{cfg.method} server-view inverter",
            log=log,
        )
        del v_att
        recs["server view: inverter"] = _reconstruct(inverter, view_enrol)
        privacy["server view, learned inverter"] = _judged(w, method, recs["server view: inverter"], t_probe, threshold)
        plain = getattr(method, "view_as_image", None)
        if plain is not None:
            recs["server view: plain"] = plain(view_enrol)
            privacy["server view, inverse DCT"] = _judged(w, method, recs["server view: plain"], t_probe, threshold)
    log(f"{cfg.method}: attacks done")

    results = {
        "config": asdict(cfg),
        "method_threshold": threshold,
        "system_threshold_E": w.threshold,
        "utility": util,
        "privacy": privacy,
        "history": history,
        "fit_seconds": fit_s,
        "compared": _compared_rows(cfg.compare_with),
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from .input_report import write_input_report

    write_input_report(results, w.x_enrol, recs, out)
    log(f"wrote {out} in {time.time() - t0:.0f} s")
    return results


def _compared_rows(path: str | None) -> dict[str, Any] | None:
    """Utility and identity inference of the template harness's rows, from its results.json."""
    if not path or not Path(path).exists():
        return None
    res = json.loads(Path(path).read_text())
    rows = {}
    for name in ("unprotected", "AdvFace start=random", "AdvFace start=shadow"):
        if name in res.get("utility", {}):
            inf = {a: v["identity_inference"] for a, v in res["privacy"][name].items()}
            rows[name] = {"acc": res["utility"][name]["vs_fresh"]["acc"], "identity_inference": inf}
    return {"source": path, "rows": rows}
