"""Queries as an attack: the score oracle and a decision-only attack run against the running
service over HTTP, as an attacker with its own API key would, on real faces.

The gallery: LFW's enrolled files (``pairs.txt``, SFace), enrolled through ``POST /enrol`` with
the package's production recipe (AdvFace at the default settings + the keyed rotation). The
threshold: FAR 1e-3 on the protected gallery against clean probes (every cross-identity pair).
Targets: people with one enrolled template and another photo among the probes.

Attacker (knows the package, the threshold, has E and its own faces: templates of people who
are not the target; no key, no stored template):

- **score oracle** (API key with scope ``scores``): ``n`` of its own templates sent to
  ``/verify`` claiming the target with ``return_score``; least squares on the returned cosines
  (:func:`advface_fast.eval.threat.key_recovery.score_oracle`);
- **decisions only** (a plain ``verify`` key): :func:`advface_fast.eval.threat.decision_oracle.decision_oracle`;
- **decisions under the default budget**: the same attacker against the service's default
  per-identity budget (``20/h``): the answers it gets in one window, and how many hours each
  point of the curve costs.

Judged at the template level, by E at the clean system's threshold (FAR 1e-3): a target counts as
inferred when the attacker's estimate of the (unrotated) stored template is accepted against
*another* photo of the target; the wrong-person floor is the same test against a photo of someone
else. A decoder turns the estimate into a face, losing identity on the way (``threat-faces``
measures that): these rates bound identity inference from above.

    PYTHONPATH=benchmarks python benchmarks/service_oracle_attack.py \
        --out-dir benchmarks/results/service-oracle-lfw
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from faces_setup import recognition_data
from machine import run_header

import advface_fast as af
from advface_fast.deploy.client import ServiceClient, ServiceError
from advface_fast.deploy.service import ServiceConfig, start_service, stop_service
from advface_fast.deploy.service.access import ApiKey, ApiKeys, digest
from advface_fast.deploy.service.budget import Budget
from advface_fast.deploy.service.config import DEFAULT_IDENTITY_BUDGET
from advface_fast.eval.faces import _operating_sets
from advface_fast.eval.faces_config import FacesEvalConfig
from advface_fast.eval.threat.decision_oracle import decision_oracle
from advface_fast.eval.threat.key_recovery import score_oracle
from advface_fast.match.config import SETTING_KEYS, DeploymentConfig
from advface_fast.metrics.operating_point import cross_identity_scores, threshold_at_far

KEY = b"service-oracle-benchmark-key-000"  # fixed: reproducible, not a secret
TOKENS = {"admin": "admin-token-0123456789", "scores": "scores-token-0123456789", "plain": "plain-token-0123456789"}
SCORE_QUERIES = (16, 64, 128, 256)
DECISION_QUERIES = (100, 300, 1000, 3000, 10000)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _judge(est: dict[int, np.ndarray | None], other: np.ndarray, wrong: np.ndarray, thr: float) -> dict:
    """Per query count: share of targets inferred (estimate vs another photo > thr) and the floor."""
    out = {}
    for q in sorted(next(iter(est.values())).keys()) if est else []:
        hit = miss = n = 0
        for t, by_q in est.items():
            e = by_q[q]
            n += 1
            if e is not None:
                hit += float(e @ other[t]) > thr
                miss += float(e @ wrong[t]) > thr
        out[str(q)] = {"identity_inference": 100 * hit / n, "wrong_person": 100 * miss / n, "targets": n}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--score-targets", type=int, default=100)
    ap.add_argument("--decision-targets", type=int, default=12)
    ap.add_argument("--threads", type=int, default=6, help="attacker threads (targets attacked at once)")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    t0 = time.time()
    cfg, data, shadow = recognition_data(FacesEvalConfig.from_json(None), args.cache_dir)
    dim = data.z_test.shape[1]
    g, q, _, _ = _operating_sets(data)
    z = _unit(data.z_test.numpy().astype(np.float64))
    person = np.asarray(data.protocol.person)
    names = [str(p) for p in person]

    # the deployment: production recipe, threshold at FAR 1e-3 on the protected gallery
    prot = af.Protector(shadow, None, key=KEY, rotate=True, progress=False)
    stored = prot(z[g].astype(np.float32), row_ids=g.astype(np.int64))
    unrotated = _unit(stored.astype(np.float64) @ af.rotation.keyed_rotation(KEY, dim).numpy().astype(np.float64))
    _, imp = cross_identity_scores(z[q], person[q], unrotated, person[g])
    thr = threshold_at_far(imp, 1e-3)
    _, imp_clean = cross_identity_scores(z[q], person[q], z[g], person[g])
    thr_clean = threshold_at_far(imp_clean, 1e-3)
    print(f"threshold (protected gallery, FAR 1e-3): {thr:.4f}; clean system: {thr_clean:.4f} ({len(imp):,} impostors)")

    tmp = Path(tempfile.mkdtemp(prefix="oracle-"))
    s = prot.settings(dim)
    DeploymentConfig(thr, 1e-3, {k: s[k] for k in SETTING_KEYS}, None, None, None).save(tmp / "deployment.json")
    keys = ApiKeys([
        ApiKey("admin", frozenset({"enrol", "stats"}), digest(TOKENS["admin"])),
        ApiKey("attacker-scores", frozenset({"verify", "scores"}), digest(TOKENS["scores"])),
        ApiKey("attacker", frozenset({"verify"}), digest(TOKENS["plain"])),
    ])  # fmt: skip

    # targets: one enrolled template, another photo among the probes; the attacker's own faces:
    # probe templates of everyone else
    enrolled_count = {n: int((person[g] == n).sum()) for n in set(person[g])}
    rng = np.random.default_rng(0)
    cands = [int(i) for i in g if enrolled_count[person[i]] == 1 and any(person[j] == person[i] and j != i for j in q)]
    rng.shuffle(cands)
    targets = cands[: max(args.score_targets, args.decision_targets)]
    other = {t: z[next(j for j in q if person[j] == person[t] and j != t)] for t in targets}
    wrong = {t: z[rng.choice([j for j in q if person[j] != person[t]])] for t in targets}

    def own_for(t: int) -> np.ndarray:
        return z[[j for j in q if person[j] != person[t]]]

    results: dict = {}

    def run(identity_budget: Budget | None, label: str, work) -> None:
        ray_cfg = ServiceConfig(
            protect_kwargs={"rotate": True}, gallery=str(tmp / f"{label}.faiss"),
            deployment=str(tmp / "deployment.json"), identity_budget=identity_budget, key_budget=None,
            max_rows=4096, max_body_bytes=64 << 20,
        )  # fmt: skip
        url = start_service(shadow, None, KEY, keys, ray_cfg, port=_free_port())
        try:
            admin = ServiceClient(url, TOKENS["admin"])
            for a in range(0, len(g), 2048):
                admin.enrol(z[g[a : a + 2048]].astype(np.float32), [names[i] for i in g[a : a + 2048]], g[a : a + 2048])
            work(url)
        finally:
            stop_service()

    def attack_scores(url: str) -> None:
        est: dict[int, dict[int, np.ndarray | None]] = {}
        tg = targets[: args.score_targets]

        def one(t: int) -> None:
            c = ServiceClient(url, TOKENS["scores"])
            own = own_for(t)
            own = own[np.random.default_rng(t).permutation(len(own))[: max(SCORE_QUERIES)]]
            scores = np.array([c.verify(p, names[t], return_score=True)["score"] for p in own])
            est[t] = {
                n: score_oracle(torch.from_numpy(own[:n]), torch.from_numpy(scores[:n, None]))[0].double().numpy()
                for n in SCORE_QUERIES
            }

        _threads(one, tg, args.threads)
        results["score_oracle"] = _judge(est, other, wrong, thr_clean)
        cos = {n: float(np.mean([est[t][n] @ unrotated[np.flatnonzero(g == t)[0]] for t in tg])) for n in SCORE_QUERIES}
        for n in SCORE_QUERIES:
            results["score_oracle"][str(n)]["cosine_to_stored"] = cos[n]

    def attack_decisions(url: str) -> None:
        est: dict[int, dict[int, np.ndarray | None]] = {}
        tg = targets[: args.decision_targets]

        def one(t: int) -> None:
            c = ServiceClient(url, TOKENS["plain"])
            est[t] = decision_oracle(
                lambda p: c.verify(p, names[t])["decision"] == "accept", own_for(t), thr, DECISION_QUERIES, seed=t
            )

        t1 = time.time()
        _threads(one, tg, args.threads)
        results["decisions_only"] = _judge(est, other, wrong, thr_clean)
        results["decisions_only_http_seconds"] = time.time() - t1
        for n in DECISION_QUERIES:
            vals = [est[t][n] @ unrotated[np.flatnonzero(g == t)[0]] for t in tg if est[t][n] is not None]
            results["decisions_only"][str(n)]["cosine_to_stored"] = float(np.mean(vals)) if vals else None
            results["decisions_only"][str(n)]["hours_at_default_budget"] = (
                n / DEFAULT_IDENTITY_BUDGET.queries * (DEFAULT_IDENTITY_BUDGET.window_s / 3600)
            )

    def attack_budgeted(url: str) -> None:
        """The decision attacker against the default budget: what one window gives."""
        answered = refused = 0
        est: dict[int, dict[int, np.ndarray | None]] = {}
        tg = targets[: args.decision_targets]
        for t in tg:
            c = ServiceClient(url, TOKENS["plain"])
            got = []

            def ask(p: np.ndarray, t: int = t, c: ServiceClient = c, got: list = got) -> bool:
                nonlocal answered, refused
                try:
                    ok = c.verify(p, names[t])["decision"] == "accept"
                    answered += 1
                    return ok
                except ServiceError as exc:
                    if exc.status != 429:
                        raise
                    refused += 1
                    return False  # no answer: the attacker learns nothing (counted as a reject)

            est[t] = decision_oracle(ask, own_for(t), thr, [1000], seed=t)
        results["decisions_default_budget_one_window"] = {
            **_judge(est, other, wrong, thr_clean)["1000"],
            "queries_sent_per_target": 1000,
            "answered": answered,
            "refused_429": refused,
            "budget": str(DEFAULT_IDENTITY_BUDGET),
        }

    run(None, "scores", lambda url: (attack_scores(url), attack_decisions(url)))
    run(DEFAULT_IDENTITY_BUDGET, "budget", attack_budgeted)
    ceiling = {
        "identity_inference": 100
        * np.mean([unrotated[np.flatnonzero(g == t)[0]] @ other[t] > thr_clean for t in targets])
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        **run_header("PYTHONPATH=benchmarks "),
        "data": f"LFW pairs.txt ({cfg.pairs}), encoder {cfg.encoder}, {len(g)} enrolled templates",
        "defence": "AdvFace (default eps) + keyed rotation, served by advface-fast serve",
        "threshold_protected_far_1e-3": thr,
        "judge_threshold_clean_far_1e-3": thr_clean,
        "key_stolen_ceiling": ceiling,
        **results,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


def _threads(fn, items: list, n: int) -> None:
    todo = list(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if not todo or errors:
                    return
                item = todo.pop()
            try:
                fn(item)
            except BaseException as exc:  # reraised below
                errors.append(exc)

    ts = [threading.Thread(target=worker) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


if __name__ == "__main__":
    raise SystemExit(main())
