"""The service: the value checks and bulk body (no Ray), the FastAPI app in-process (enrol, verify,
identify equal to the library's decisions, scopes, budgets, the audit log, the journal), and the
Serve application on a local Ray instance (results equal to protect(), batching, refusals, HTTPS,
SIGTERM)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_protection, make_pair, unit_rows, write_key

import advface_fast as af
from advface_fast.deploy.service.access import DEFAULT_SCOPES, ApiKey, ApiKeys, digest, load_api_keys
from advface_fast.deploy.service.budget import Budget, QueryBudgets
from advface_fast.deploy.service.wire import RequestError, check_ids, check_labels, check_rows, read_npz, write_npz

KEY = b"test-key-s-0123456789abcdefghijk"
API_KEY = "test-api-key-0123456789"
GATE_KEY = "test-gate-key-0123456789"
DIM = 24


# -- value checks and the bulk body --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "status", "match"),
    [
        ([[1, 2], [1]], 400, "equal length|shape"),
        ([[1.0, 2.0]], 400, "dimension 2"),
        ([[float("nan")] + [1.0] * (DIM - 1)], 400, "NaN"),
        ([[1e39] * DIM], 400, "float32 range"),
        ([[0.1] * DIM, [0.0] * DIM], 400, "1 is all zeros"),
        ([[3e37] * DIM], 400, "norm"),
        (np.zeros((2, 3, DIM)), 400, "shape"),
        (np.ones((5, DIM)), 413, "limit is 4"),
    ],
)
def test_bad_templates_named(values, status, match):
    with pytest.raises(RequestError, match=match) as exc:
        check_rows(values, DIM, max_rows=4)
    assert exc.value.status == status


def test_ids_and_labels_checked_and_drawn():
    with pytest.raises(RequestError, match="ids must be in"):
        check_ids([-1], 1)
    with pytest.raises(RequestError, match="2 ids for 1"):
        check_ids([1, 2], 1)
    with pytest.raises(RequestError, match="distinct"):
        check_ids([3, 3], 2)
    with pytest.raises(RequestError, match="list of integers"):
        check_ids(np.array([1.5]), 1)
    a, b = check_ids(None, 3), check_ids(None, 3)
    assert a.dtype == np.int64 and len(set(a.tolist()) | set(b.tolist())) == 6  # each template its own noise
    with pytest.raises(RequestError, match="printable"):
        check_labels(["ok", "bad\nline"], np.array([1, 2]))
    assert check_labels(None, np.array([7])) == ["7"]


def _npz_declaring(shape: tuple) -> bytes:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + repr(shape) + ", }"
    header += " " * (63 - len(header) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\x00" * 16
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("templates.npy", npy)
    return buf.getvalue()


def _compressed() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, templates=np.zeros((1000, DIM), np.float32))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not a zip", "readable .npz"),
        (_npz_declaring((2**40, DIM)), "more than the body holds"),
        (_compressed(), "uncompressed"),
        (write_npz(rows=np.zeros((1, DIM), np.float32)), "must hold templates"),
        (write_npz(templates=np.zeros((1, DIM), np.float64)), "float32"),
        (write_npz(templates=np.zeros((1, DIM), np.float32), ids=np.array([1.0])), "ids must be integers"),
        (write_npz(templates=np.zeros((1, DIM), np.float32), labels=np.array([b"x"])), "unicode"),
    ],
)
def test_malformed_bulk_bodies_are_400(body, match):
    with pytest.raises(RequestError, match=match) as exc:
        read_npz(body)
    assert exc.value.status == 400


def test_bulk_round_trip_of_many_ids():
    """4,096 drawn 63-bit ids travel in the body, not a header (#38.5: an 80 KB header failed)."""
    rows, ids = unit_rows(4096, DIM), check_ids(None, 4096)
    got = read_npz(write_npz(templates=rows, ids=ids, labels=np.array([f"p{i}" for i in range(4096)])))
    np.testing.assert_array_equal(got["templates"], rows)
    np.testing.assert_array_equal(got["ids"], ids)
    assert got["labels"][4095] == "p4095"


# -- API keys and budgets ------------------------------------------------------------------------


def test_api_keys_file_scopes_and_refusals(tmp_path):
    from advface_fast.deploy.service.access import add_api_key

    f = tmp_path / "api_keys"
    gate = add_api_key(f, "gate-1", frozenset({"verify", "identify"}))
    hr = add_api_key(f, "hr", frozenset({"enrol"}))
    assert (f.stat().st_mode & 0o777) == 0o600 and gate not in f.read_text()  # digests only
    keys = load_api_keys(f)
    assert keys.authorise(f"Bearer {gate}").name == "gate-1" and keys.authorise(f"bearer {hr}").name == "hr"
    assert (
        keys.authorise(f"Bearer {gate}x") is None and keys.authorise(None) is None and keys.authorise("Bearer ") is None
    )
    assert keys.authorise(f"Bearer {gate}").allows("verify") and not keys.authorise(f"Bearer {gate}").allows("scores")
    with pytest.raises(ValueError, match="already has a key named"):
        add_api_key(f, "hr", frozenset({"enrol"}))
    f.write_text(f.read_text() + "broken line\n")
    with pytest.raises(ValueError, match="entry 3 is not"):
        load_api_keys(f)
    f.write_text("one-bare-token-of-enough-length\n")
    assert load_api_keys(f).keys[0].scopes == DEFAULT_SCOPES
    f.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_api_keys(f)


def test_budget_refuses_then_resets_with_the_window():
    now = [1000.0]
    b = QueryBudgets(Budget(2, 60.0), Budget(3, 60.0), clock=lambda: now[0])
    assert b.charge("k", "alice") is None and b.charge("k", "alice") is None
    wait = b.charge("k", "alice")  # alice's 2 per window spent
    assert wait == pytest.approx(20.0)  # the window [960, 1020) ends in 20 s
    assert b.charge("k", "bob") is None  # the refused query was not charged to the key
    assert b.charge("k", "carol") is not None  # the key's 3 spent
    now[0] = 1020.0
    assert b.charge("k", "alice") is None  # a new window
    assert Budget.parse("20/h") == Budget(20, 3600.0) and Budget.parse("5/30s") == Budget(5, 30.0)
    assert Budget.parse("none") is None
    for bad in ("20", "0/h", "x/h", "5/0s"):
        with pytest.raises(ValueError):
            Budget.parse(bad)


# -- the app in-process (FastAPI, no Ray) --------------------------------------------------------


@pytest.fixture()
def app_world(tmp_path):
    """A service over a new FAISS gallery, rotated, threshold 0.5 on random 24-d templates."""
    pytest.importorskip("faiss")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from advface_fast.deploy.service import ServiceConfig, local_service
    from advface_fast.match.config import SETTING_KEYS, DeploymentConfig

    dec, _ = make_pair(dim=DIM)
    settings = af.Protector(dec, key=KEY, progress=False, rotate=True).settings(DIM)
    DeploymentConfig(0.5, 1e-3, {k: settings[k] for k in SETTING_KEYS}, None, None, None).save(tmp_path / "dep.json")
    keys = ApiKeys([
        ApiKey("admin", DEFAULT_SCOPES | {"scores"}, digest(API_KEY)),
        ApiKey("gate", frozenset({"verify", "identify"}), digest(GATE_KEY)),
    ])  # fmt: skip
    cfg = ServiceConfig(
        protect_kwargs={"rotate": True}, gallery=str(tmp_path / "g.faiss"), deployment=str(tmp_path / "dep.json"),
        identity_budget=Budget(3, 60.0), key_budget=None, max_body_bytes=64 << 10,
    )  # fmt: skip

    def start():
        return TestClient(local_service(dec, None, KEY, keys, cfg))

    return {"start": start, "dec": dec, "cfg": cfg, "tmp": tmp_path}


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_enrol_verify_identify_equal_the_librarys_decisions(app_world):
    from advface_fast.match import DeploymentConfig, Matcher

    c = app_world["start"]()
    z = unit_rows(12, DIM, seed=1)
    labels = [f"p{i // 2}" for i in range(12)]  # 6 people, 2 templates each
    r = c.post(
        "/enrol", json={"templates": z.tolist(), "labels": labels, "ids": list(range(100, 112))}, headers=_h(API_KEY)
    )
    assert r.status_code == 200 and r.json() == {"ids": list(range(100, 112)), "labels": labels}
    keeper = c.app.state.core._keeper
    stored = keeper.store.gallery
    want_rows = af.protect(z, app_world["dec"], key=KEY, rotate=True, row_ids=np.arange(100, 112), progress=False)
    got = np.stack([stored.index.reconstruct(i) for i in range(100, 112)])
    np.testing.assert_allclose(got, want_rows / np.linalg.norm(want_rows, axis=1, keepdims=True), atol=1e-5)
    lib = Matcher(stored, DeploymentConfig.load(app_world["tmp"] / "dep.json"), KEY)
    probes = np.concatenate([z + 0.05 * unit_rows(12, DIM, seed=2), unit_rows(6, DIM, seed=3)])
    keeper.budgets.per_identity = None
    for j, p in enumerate(probes):
        claim = labels[j % 12]
        v = c.post("/verify", json={"template": p.tolist(), "claim": claim}, headers=_h(GATE_KEY)).json()
        assert v == {"decision": "accept" if lib.verify(p, claim).accept else "reject"}
        d = lib.identify(p)[0]
        i = c.post("/identify", json={"template": p.tolist()}, headers=_h(GATE_KEY)).json()
        assert i == {"decision": "match" if d.accept else "unknown", "identity": d.identity}
    accepted = [c.post("/verify", json={"template": p.tolist(), "claim": labels[j]}, headers=_h(GATE_KEY)).json()
                for j, p in enumerate(probes[:12])]  # fmt: skip
    assert all(a["decision"] == "accept" for a in accepted)  # genuine probes (cos ~0.99 clean) pass 0.5
    # an unknown claim is answered like a wrong person; the log says why
    assert c.post("/verify", json={"template": z[0].tolist(), "claim": "mallory"}, headers=_h(GATE_KEY)).json() == {
        "decision": "reject"
    }


def test_scores_need_the_scope_and_decisions_carry_none(app_world):
    c = app_world["start"]()
    z = unit_rows(2, DIM, seed=4)
    c.post("/enrol", json={"templates": z.tolist(), "labels": ["a", "b"]}, headers=_h(API_KEY))
    ask = {"template": z[0].tolist(), "claim": "a", "return_score": True}
    r = c.post("/verify", json=ask, headers=_h(GATE_KEY))
    assert r.status_code == 403 and "scores" in r.json()["error"]
    r = c.post("/verify", json=ask, headers=_h(API_KEY)).json()
    assert r["decision"] == "accept" and r["score"] > r["threshold"] == 0.5
    plain = c.post("/verify", json={"template": z[0].tolist(), "claim": "a"}, headers=_h(API_KEY)).json()
    assert set(plain) == {"decision"}
    r = c.post("/enrol", json={"templates": z[:1].tolist()}, headers=_h(GATE_KEY))
    assert r.status_code == 403 and "'enrol'" in r.json()["error"]


def test_budget_429_with_retry_after_then_reset(app_world):
    c = app_world["start"]()
    z = unit_rows(1, DIM, seed=5)
    c.post("/enrol", json={"templates": z.tolist(), "labels": ["a"]}, headers=_h(API_KEY))
    now = [7200.0]
    c.app.state.core._keeper.budgets.clock = lambda: now[0]
    q = {"template": z[0].tolist(), "claim": "a"}
    assert [c.post("/verify", json=q, headers=_h(GATE_KEY)).status_code for _ in range(3)] == [200] * 3
    r = c.post("/verify", json=q, headers=_h(GATE_KEY))
    assert r.status_code == 429 and r.headers["retry-after"] == "60" and "budget" in r.json()["error"]
    now[0] += 30
    assert c.post("/verify", json=q, headers=_h(GATE_KEY)).headers["retry-after"] == "30"
    now[0] += 30
    assert c.post("/verify", json=q, headers=_h(GATE_KEY)).status_code == 200


def test_audit_log_holds_every_decision_and_no_template(app_world):
    c = app_world["start"]()
    z = unit_rows(3, DIM, seed=6)
    c.post("/enrol", json={"templates": z.tolist(), "labels": ["a", "b", "c"]}, headers=_h(API_KEY))
    answers = [
        c.post("/verify", json={"template": z[j % 3].tolist(), "claim": "a"}, headers=_h(GATE_KEY)) for j in range(5)
    ]
    answers += [c.post("/identify", json={"template": z[j].tolist()}, headers=_h(GATE_KEY)) for j in range(3)]
    lines = [json.loads(x) for x in Path(app_world["cfg"].audit_path()).read_text().splitlines()]
    decisions = [x for x in lines if x["event"] in ("verify", "identify")]
    assert len(decisions) == len(answers) == 8
    # 3 verify answers for 'a' then the budget (3 per window) refuses 2: logged as refusals
    assert [x.get("decision") for x in decisions[:5]] == ["accept", "reject", "reject"] + ["refused: query budget"] * 2
    assert [a.status_code for a in answers[:5]] == [200, 200, 200, 429, 429]
    assert all(x["api_key"] == "gate" and "time" in x for x in decisions)
    text = Path(app_world["cfg"].audit_path()).read_text()
    for v in z.ravel()[:20]:  # no template value, no score, no token
        assert repr(float(v))[:8] not in text
    assert "score" not in text and GATE_KEY not in text
    assert (os.stat(app_world["cfg"].audit_path()).st_mode & 0o777) == 0o600


def test_refusals_are_4xx_and_never_protect(app_world):
    c = app_world["start"]()
    before = dict(c.app.state.core.stats)
    h = _h(API_KEY)
    cases = [
        ("/protect", {"json": {"templates": [["a"]]}}, h, 400, "valid number"),
        ("/protect", {"json": {"templates": [[0.1] * 7]}}, h, 400, "dimension 7"),
        ("/protect", {"json": {"templates": [[0.1] * DIM], "x": 1}}, h, 400, "Extra inputs"),
        ("/protect", {"json": {"templates": [[True] * DIM]}}, h, 400, "valid"),
        (
            "/protect",
            {
                "content": b'{"templates": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
                "headers": {"content-type": "application/json"},
            },
            h,
            400,
            "parsing the body",
        ),
        ("/protect", {"content": b"0" * (65 << 10), "headers": {"content-type": "application/json"}}, h, 413, "larger"),
        ("/protect/npz", {"content": b"x", "headers": {"content-type": "text/csv"}}, h, 415, "Content-Type"),
        ("/protect", {"json": {"templates": [[0.1] * DIM]}}, _h("wrong-key-0123456789"), 401, "API key"),
        ("/protect", {"json": {"templates": [[0.1] * DIM]}}, {}, 401, "API key"),
        ("/verify", {"json": {"template": [0.1] * DIM, "claim": ""}}, h, 400, "claim"),
        ("/nothing", {"json": {}}, h, 404, "Not Found"),
    ]
    for path, kw, hdr, status, match in cases:
        kw = {**kw, "headers": {**hdr, **kw.get("headers", {})}}
        r = c.post(path, **kw)
        assert r.status_code == status and match in r.json()["error"], (path, r.status_code, r.text[:300])
    assert c.get("/protect", headers=h).status_code == 405
    assert c.get("/healthz").json() == {"status": "ok", "dim": DIM}
    after = c.app.state.core.stats
    assert after["requests"] == before["requests"] and after["rows"] == before["rows"]
    assert after["refused"] == before["refused"] + len(cases) + 1
    z = unit_rows(1, DIM)
    c.post("/enrol", json={"templates": z.tolist(), "ids": [5]}, headers=h)
    r = c.post("/enrol", json={"templates": z.tolist(), "ids": [5]}, headers=h)
    assert r.status_code == 409 and "already used" in r.json()["error"]


def test_openapi_lists_every_endpoint_and_stats_shows_resolved_settings(app_world):
    c = app_world["start"]()
    paths = c.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/protect",
        "/protect/npz",
        "/enrol",
        "/enrol/npz",
        "/verify",
        "/identify",
        "/stats",
        "/healthz",
    }
    assert c.get("/docs").status_code == 200
    st = c.get("/stats", headers=_h(API_KEY)).json()
    prot = st["config"]["protection"]
    assert prot["eps"] > 0 and prot["alpha"] > 0 and prot["rotate"] is True and prot["key"] == af.keys.key_id(KEY)
    assert st["gallery"]["templates"] == 0 and st["gallery"]["threshold"] == 0.5
    assert c.get("/stats", headers=_h(GATE_KEY)).status_code == 403


def test_enrolments_survive_a_restart_through_the_journal(app_world):
    c = app_world["start"]()
    z = unit_rows(4, DIM, seed=8)
    buf = write_npz(templates=z, ids=np.arange(10, 14), labels=np.array(["a", "b", "c", "d"]))
    r = c.post("/enrol/npz", content=buf, headers={**_h(API_KEY), "content-type": "application/x-npz"})
    assert r.status_code == 200 and r.json()["ids"] == [10, 11, 12, 13]
    del c  # no checkpoint: a crash
    again = app_world["start"]()  # replays the journal
    assert again.post("/identify", json={"template": z[2].tolist()}, headers=_h(GATE_KEY)).json()["identity"] == "c"
    again.app.state.core._keeper.close()  # a clean stop: the index holds them, the journal is empty
    assert os.path.getsize(str(app_world["tmp"] / "g.faiss.journal")) == 0
    third = app_world["start"]()
    assert third.post("/identify", json={"template": z[3].tolist()}, headers=_h(GATE_KEY)).json()["identity"] == "d"


def test_one_request_that_cannot_be_protected_never_fails_the_others_in_its_batch():
    """A batch whose computation fails is computed again request by request: the bad request gets
    its own error, the others their rows, equal to protect()."""
    import asyncio

    from advface_fast.deploy.service import ServiceConfig
    from advface_fast.deploy.service.protecting import Protecting
    from advface_fast.errors import NonFiniteError

    dec, _ = make_pair(dim=DIM)
    p = Protecting(dec, None, KEY, ServiceConfig())
    real = p._compute

    def compute(rows, ids):  # a request whose rows the protection refuses (as a NaN decoder output would)
        if (ids == 666).any():
            raise NonFiniteError("the decoder returned NaN for this template")
        return real(rows, ids)

    p._compute = compute
    good = [(unit_rows(2, DIM, seed=s), np.array([10 * s, 10 * s + 1])) for s in (1, 2)]
    bad = (unit_rows(1, DIM, seed=3), np.array([666]))
    out = asyncio.run(p._protect_batch_impl([good[0], bad, good[1]]))
    assert isinstance(out[1], NonFiniteError)
    for (rows, ids), got in zip(good, (out[0], out[2]), strict=True):
        assert_same_protection(got, af.protect(rows, dec, key=KEY, row_ids=ids, progress=False))


# -- the CLI's refusals --------------------------------------------------------------------------


def test_serve_cli_refuses_without_a_real_api_key(tmp_path, capsys):
    from advface_fast.cli import main

    dec, _ = make_pair(dim=DIM)
    af.save_model(dec, tmp_path / "dec.safetensors")
    write_key(tmp_path / "key", KEY)
    (tmp_path / "api").write_text("short\n")
    (tmp_path / "api").chmod(0o644)
    argv = ["serve", "--decoder", str(tmp_path / "dec.safetensors"), "--key-file", str(tmp_path / "key")]
    assert main([*argv, "--api-key-file", str(tmp_path / "api")]) == 2
    assert "chmod 600" in capsys.readouterr().err  # a token others can read is refused first
    (tmp_path / "api").chmod(0o600)
    assert main([*argv, "--api-key-file", str(tmp_path / "api")]) == 2
    assert "shorter than 16" in capsys.readouterr().err
    assert main([*argv, "--api-key-file", str(tmp_path / "none")]) == 2
    assert "API key file not found" in capsys.readouterr().err
    write_key(tmp_path / "api", b"a-long-enough-api-token-000")
    assert main([*argv, "--api-key-file", str(tmp_path / "api"), "--gallery", str(tmp_path / "g.faiss")]) == 2
    assert "--gallery needs --deployment" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["same", "symlink", "copy"])
def test_serve_refuses_the_protection_key_as_its_api_key(tmp_path, capsys, how):
    from advface_fast.cli import main

    dec, _ = make_pair(dim=DIM)
    af.save_model(dec, tmp_path / "dec.safetensors")
    key = write_key(tmp_path / "key", KEY)
    api = {"same": key, "symlink": tmp_path / "api", "copy": tmp_path / "api"}[how]
    if how == "symlink":
        api.symlink_to(key)
    elif how == "copy":
        write_key(api, KEY)
    argv = ["serve", "--decoder", str(tmp_path / "dec.safetensors"), "--key-file", str(key), "--api-key-file", str(api)]
    assert main(argv) == 2
    assert "protection key" in capsys.readouterr().err


def test_api_key_command_prints_the_token_once(tmp_path, capsys):
    from advface_fast.cli import main

    assert main(["api-key", "gate-1", "--scopes", "verify,identify", "--file", str(tmp_path / "keys")]) == 0
    token = capsys.readouterr().out.strip()
    assert load_api_keys(tmp_path / "keys").authorise(f"Bearer {token}").name == "gate-1"
    assert main(["api-key", "x", "--scopes", "verify,fly", "--file", str(tmp_path / "keys")]) == 2
    assert "unknown scopes ['fly']" in capsys.readouterr().err


# -- the Serve application on a local Ray instance ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    pytest.importorskip("ray.serve")
    pytest.importorskip("faiss")
    import ray

    from advface_fast.deploy.service import ServiceConfig, start_service, stop_service
    from advface_fast.match.config import SETTING_KEYS, DeploymentConfig

    tmp = tmp_path_factory.mktemp("serve")
    dec, _ = make_pair(dim=DIM)
    settings = af.Protector(dec, key=KEY, progress=False).settings(DIM)
    DeploymentConfig(0.5, 1e-3, {k: settings[k] for k in SETTING_KEYS}, None, None, None).save(tmp / "dep.json")
    cfg = ServiceConfig(
        max_batch_requests=16,
        batch_wait_s=0.05,
        max_rows=64,
        max_body_bytes=64 << 10,
        num_replicas=2,  # results must not depend on the replica: both load the same models and key
        cpus_per_replica=0.5,
        gallery=str(tmp / "g.faiss"),
        deployment=str(tmp / "dep.json"),
        identity_budget=Budget(5, 3600.0),
    )
    keys = ApiKeys([ApiKey("admin", DEFAULT_SCOPES, digest(API_KEY))])
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        url = start_service(dec, None, KEY, keys, cfg, port=_free_port())
        yield url, dec, cfg
    finally:
        stop_service()


def _all_stats(client, timeout_s: float = 60.0) -> dict[str, dict]:
    """/stats of every replica (a request reaches one of them: ask until both answered).

    Spaced in time, not only in count: in one CI run 60 back-to-back requests all reached one
    replica (cause not found; not reproduced here). A replica that restarted would answer with
    fresh counters, so the totals the tests check would still catch it."""
    from ray import serve

    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = client.stats()
        seen[st["replica"]] = st
        if len(seen) == 2:
            return seen
        time.sleep(0.1)
    raise AssertionError(
        f"only replicas {sorted(seen)} answered in {timeout_s:.0f} s; serve.status(): {serve.status()}"
    )


def _total(stats: dict[str, dict], key: str) -> int:
    return sum(s[key] for s in stats.values())


def test_service_equals_protect_and_batches(service):
    from advface_fast.deploy.client import ServiceClient

    url, dec, _ = service
    feats = unit_rows(48, DIM, seed=11)
    ids = np.arange(100, 148, dtype=np.int64)
    results: dict[int, np.ndarray] = {}

    def enrol(i: int) -> None:  # 48 single-template requests from 16 threads at once
        c = ServiceClient(url, API_KEY)
        for j in range(i, 48, 16):
            rows, got_ids = c.protect(feats[j], ids[j : j + 1])
            assert got_ids.tolist() == [int(ids[j])]
            results[j] = rows[0]
        c.close()

    threads = [threading.Thread(target=enrol, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    want = af.protect(feats, dec, key=KEY, row_ids=ids, progress=False)
    assert_same_protection(np.stack([results[j] for j in range(48)]), want)
    client = ServiceClient(url, API_KEY)
    st = _all_stats(client)
    assert _total(st, "requests") >= 48 and _total(st, "batches") < _total(st, "requests")
    assert max(s["max_batch_requests"] for s in st.values()) > 1
    # a many-row JSON request without ids: ids drawn and returned, and they reproduce the result
    status, _, body = client.request(
        "POST", "/protect", json.dumps({"templates": feats[:5].tolist()}).encode(), {"Content-Type": "application/json"}
    )
    doc = json.loads(body)
    assert status == 200 and len(set(doc["ids"])) == 5
    assert_same_protection(
        np.float32(doc["templates"]), af.protect(feats[:5], dec, key=KEY, row_ids=np.array(doc["ids"]), progress=False)
    )


def test_service_enrols_verifies_identifies_through_ray(service):
    from advface_fast.deploy.client import ServiceClient, ServiceError

    url, _, cfg = service
    c = ServiceClient(url, API_KEY)
    z = unit_rows(6, DIM, seed=21)
    ids = c.enrol(z, labels=["ann", "ann", "ben", "ben", "cat", "cat"])
    assert len(set(ids)) == 6
    assert c.verify(z[0] + 0.05, "ann") == {"decision": "accept"}
    assert c.verify(z[0], "cat") == {"decision": "reject"}
    assert c.identify(z[4]) == {"decision": "match", "identity": "cat"}
    assert c.identify(unit_rows(1, DIM, seed=99)[0]) == {"decision": "unknown", "identity": None}
    with pytest.raises(ServiceError) as exc:
        c.verify(z[0], "ann", return_score=True)
    assert exc.value.status == 403
    for _ in range(4):  # ann's budget is 5 per hour, one spent above (a refused scope spends none)
        c.verify(z[0], "ann")
    with pytest.raises(ServiceError) as exc:
        c.verify(z[0], "ann")
    assert exc.value.status == 429 and exc.value.retry_after >= 1
    lines = [json.loads(x) for x in Path(cfg.audit_path()).read_text().splitlines()]
    assert sum(x["event"] == "verify" for x in lines) == 7 and sum(x["event"] == "identify" for x in lines) == 2


def test_service_refuses_over_ray(service):
    from advface_fast.deploy.client import ServiceClient

    url, _, _ = service
    for key in ("", "wrong-key"):
        status, _, body = ServiceClient(url, key).request(
            "POST", "/protect", b"{}", {"Content-Type": "application/json"}
        )
        assert status == 401 and "API key" in json.loads(body)["error"]
    c = ServiceClient(url, API_KEY)
    status, _, body = c.request("POST", "/protect", b"0" * (65 << 10), {"Content-Type": "application/json"})
    assert status == 413
    status, _, body = c.request("GET", "/openapi.json")
    assert status == 200 and "/verify" in json.loads(body)["paths"]
    with pytest.raises(ValueError, match="http"):
        ServiceClient("ftp://x", API_KEY)


# -- HTTPS and SIGTERM: the CLI as operators run it ----------------------------------------------


def _self_signed(tmp_path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().split(")")[-1].split()[0] != "Z":
                    alive.add(p)
        except FileNotFoundError:
            pass
    return alive


@pytest.mark.server
def test_https_serve_then_sigterm_leaves_no_process(tmp_path):
    """``advface-fast serve`` with a self-signed certificate answers HTTPS (and not plain HTTP);
    SIGTERM stops it with exit 0 and no process it started left."""
    pytest.importorskip("ray.serve")
    import shutil
    import urllib.request

    if shutil.which("openssl") is None:
        pytest.skip("openssl not found (needed to make the test's certificate)")
    from advface_fast.deploy.client import ServiceClient

    cert, key_pem = _self_signed(tmp_path)
    dec, _ = make_pair(dim=DIM)
    af.save_model(dec, tmp_path / "dec.safetensors")
    write_key(tmp_path / "key", KEY)
    write_key(tmp_path / "api", API_KEY.encode())
    (tmp_path / "api").write_text(API_KEY + "\n")
    port = _free_port()
    cmd = [sys.executable, "-m", "advface_fast", "serve", "--decoder", str(tmp_path / "dec.safetensors"),
           "--key-file", str(tmp_path / "key"), "--api-key-file", str(tmp_path / "api"), "--port", str(port),
           "--ssl-certfile", cert, "--ssl-keyfile", key_pem, "--cpus-per-replica", "0.5"]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("serving on https://" in line for line in log):
            assert proc.poll() is None, "".join(log)
            assert time.monotonic() < deadline, "".join(log)
            time.sleep(0.5)
        c = ServiceClient(f"https://127.0.0.1:{port}", API_KEY, cafile=cert)
        rows, _ = c.protect(unit_rows(2, DIM), np.array([1, 2]))
        assert rows.shape == (2, DIM)
        with pytest.raises(Exception):  # noqa: B017 - plain HTTP to an HTTPS port: no HTTP answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read()
        with pytest.raises(Exception):  # noqa: B017 - a certificate nobody vouched for is refused
            ServiceClient(f"https://127.0.0.1:{port}", API_KEY).protect(unit_rows(1, DIM))
        started = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)  # to the serve process alone, as systemd and docker stop do
        assert proc.wait(120) == 0, "".join(log)
        deadline = time.monotonic() + 30
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(started), f"left behind: {_alive(started)}"
        ps = subprocess.run(["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True, check=True).stdout
        in_group = [line.split()[0] for line in ps.splitlines() if int(line.split()[1]) == proc.pid]
        assert not _alive({int(p) for p in in_group}), f"left in its process group: {in_group}"
        assert "Traceback" not in "".join(log), "".join(log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _alive(_descendants(proc.pid)):
            os.kill(p, signal.SIGKILL)


def test_a_body_that_trickles_in_is_refused_408_and_a_large_one_413():
    """The body limit middleware on its own: a client sending one byte now and then holds the
    replica's connection until the deadline, then gets 408; an over-size body 413."""
    import asyncio

    from advface_fast.deploy.service.routes import BodyLimit

    async def app(scope, receive, send):  # never reached
        raise AssertionError("the app must not see the request")

    async def run(chunks, delay):
        sent, refused = [], []

        async def receive():
            await asyncio.sleep(delay)
            body = chunks.pop(0) if chunks else b""
            return {"type": "http.request", "body": body, "more_body": bool(chunks)}

        async def send(msg):
            sent.append(msg)

        mw = BodyLimit(app, max_bytes=10, on_refuse=lambda: refused.append(1), timeout_s=0.2)
        await mw({"type": "http", "headers": []}, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])["error"], len(refused)

    status, error, refused = asyncio.run(run([b"x"] * 100, 0.05))
    assert status == 408 and "within 0.2 s" in error and refused == 1
    status, error, refused = asyncio.run(run([b"x" * 6, b"x" * 6], 0.0))
    assert status == 413 and "larger than 10 bytes" in error and refused == 1


def test_rays_token_file_is_made_owner_only(tmp_path):
    from advface_fast.deploy.service.ray_app import tighten_ray_token

    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("t" * 64)
    token.chmod(0o644)  # as Ray writes it
    assert tighten_ray_token(tmp_path) and (token.stat().st_mode & 0o777) == 0o600
    assert not tighten_ray_token(tmp_path)  # already owner-only: left alone
