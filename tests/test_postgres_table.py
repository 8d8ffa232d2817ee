"""The PostgreSQL path against a real server started here (initdb/pg_ctl on a Unix socket):
in-place protection equal to ``protect``, a kill mid-run then resume (nothing twice, nothing
skipped), refusal of other settings, concurrent updates, bad rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_protection, make_pair, unit_rows, write_key
from pg_server import PgServer, pg_bin_dir

import advface_fast as af
from advface_fast.keys import key_id

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(pg_bin_dir() is None, reason="PostgreSQL server binaries not installed")

from advface_fast.deploy.postgres_table import ConcurrentUpdateError, SettingsMismatchError, protect_table, table_state  # noqa: E402

KEY = b"test-key-k-0123456789abcdefghijk"
DIM = 24


@pytest.fixture(scope="module")
def server():
    s = PgServer().start()
    yield s
    s.stop()


@pytest.fixture
def dsn(server, request):
    """A fresh database per test."""
    name = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_").lower()[:50]
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return server.dsn.replace("dbname=postgres", f"dbname={name}")


def _fill(dsn: str, feats: np.ndarray, ids: np.ndarray, kind: str = "real[]", table: str = "faces") -> None:
    with psycopg.connect(dsn) as c:
        c.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, embedding {kind})")
        with c.cursor() as cur, cur.copy(f"COPY {table} (id, name, embedding) FROM STDIN") as cp:
            for i, v in zip(ids.tolist(), feats, strict=True):
                cp.write_row((i, f"p{i}", v.astype("<f4").tobytes() if kind == "bytea" else v.tolist()))


def _read(dsn: str, kind: str = "real[]", table: str = "faces") -> tuple[np.ndarray, np.ndarray]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(f"SELECT id, embedding FROM {table} ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows])
    if kind == "bytea":
        return ids, np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
    return ids, np.array([r[1] for r in rows], dtype=np.float32)


def _protector(**kw):
    dec, _ = make_pair(dim=DIM)
    return af.Protector(dec, key=KEY, progress=False, **kw), dec


@pytest.mark.parametrize("kind", ["real[]", "bytea"])
def test_in_place_equals_protect(dsn, kind):
    feats = unit_rows(70, DIM, seed=3)
    ids = np.arange(5, 5 + 3 * 70, 3, dtype=np.int64)  # gaps: the table's ids key the noise
    _fill(dsn, feats, ids, kind)
    prot, dec = _protector()
    res = protect_table(dsn, "faces", prot, batch_rows=16, progress=False)
    assert (res.protected, res.null_rows, res.last_id, res.resumed) == (70, 0, int(ids[-1]), False)
    got_ids, got = _read(dsn, kind)
    np.testing.assert_array_equal(got_ids, ids)
    want = af.protect(feats, dec, key=KEY, row_ids=ids, progress=False)
    assert_same_protection(got, want)
    assert not np.allclose(got, feats)
    st = table_state(dsn, "faces")
    assert st["rows_done"] == 70 and st["finished_at"] is not None and st["settings"]["key"] == key_id(KEY)


def test_other_settings_refused_and_appended_rows_protected(dsn):
    feats = unit_rows(40, DIM, seed=4)
    _fill(dsn, feats[:30], np.arange(30, dtype=np.int64))
    prot, dec = _protector()
    protect_table(dsn, "faces", prot, batch_rows=8, progress=False)
    _, before = _read(dsn)
    other, _ = _protector(eps=0.05)
    with pytest.raises(SettingsMismatchError, match="eps"):
        protect_table(dsn, "faces", other, progress=False)
    with pytest.raises(SettingsMismatchError, match=r"public\.faces\.embedding"):  # the same table by another name
        protect_table(dsn, "public.faces", other, progress=False)
    np.testing.assert_array_equal(_read(dsn)[1], before)  # nothing written
    # new enrolments appended after the run: the rerun protects them only
    with psycopg.connect(dsn) as c:
        for i in range(30, 40):
            c.execute("INSERT INTO faces (id, embedding) VALUES (%s, %s)", (i, feats[i].tolist()))
    res = protect_table(dsn, "faces", prot, batch_rows=8, progress=False)
    assert (res.protected, res.resumed) == (10, True)
    _, after = _read(dsn)
    np.testing.assert_array_equal(after[:30], before)
    assert_same_protection(after, af.protect(feats, dec, key=KEY, row_ids=np.arange(40), progress=False))


def test_nulls_kept_and_bad_rows_named(dsn):
    feats = unit_rows(12, DIM, seed=5)
    _fill(dsn, feats, np.arange(12, dtype=np.int64))
    with psycopg.connect(dsn) as c:
        c.execute("UPDATE faces SET embedding = NULL WHERE id IN (2, 7)")
    prot, _ = _protector()
    res = protect_table(dsn, "faces", prot, batch_rows=5, progress=False)
    assert (res.protected, res.null_rows) == (10, 2)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM faces WHERE embedding IS NULL").fetchone()[0] == 2
        c.execute("CREATE TABLE bad (id bigint PRIMARY KEY, embedding real[])")
        c.execute("INSERT INTO bad VALUES (1, %s), (2, %s)", (feats[0].tolist(), feats[1, :5].tolist()))
        c.execute("CREATE TABLE nan (id bigint PRIMARY KEY, embedding real[])")
        c.execute(
            "INSERT INTO nan VALUES (1, %s), (2, '{NaN}'::real[] || %s::real[])",
            (feats[0].tolist(), feats[1, 1:].tolist()),
        )
        c.execute("CREATE TABLE empty_first (id bigint PRIMARY KEY, embedding real[])")
        c.execute("INSERT INTO empty_first VALUES (1, '{}'), (2, %s)", (feats[1].tolist(),))
        c.execute("CREATE TABLE txt (id text PRIMARY KEY, embedding real[])")
        c.execute("CREATE TABLE wrongtype (id bigint PRIMARY KEY, embedding text)")
        c.execute("INSERT INTO wrongtype VALUES (1, 'x')")
    with pytest.raises(ValueError, match="id=2: embedding has 5 values"):
        protect_table(dsn, "bad", prot, progress=False)
    with pytest.raises(ValueError, match="id=2: the embedding has NaN"):
        protect_table(dsn, "nan", prot, progress=False)
    with psycopg.connect(dsn) as c:  # the failing batch wrote nothing
        assert c.execute("SELECT embedding FROM nan WHERE id = 1").fetchone()[0] == pytest.approx(feats[0].tolist())
    with pytest.raises(ValueError, match="id=1: the embedding is empty"):  # #38: was a 0-d protection
        protect_table(dsn, "empty_first", prot, progress=False)
    with pytest.raises(ValueError, match="integer id"):
        protect_table(dsn, "txt", prot, progress=False)
    with pytest.raises(ValueError, match="is text; supported"):
        protect_table(dsn, "wrongtype", prot, progress=False)
    with pytest.raises(ValueError, match="no table"):
        protect_table(dsn, "missing", prot, progress=False)
    with pytest.raises(ValueError, match="no column"):
        protect_table(dsn, "faces", prot, column="emb", progress=False)


def test_concurrent_update_rolls_back_the_batch(dsn, monkeypatch):
    feats = unit_rows(30, DIM, seed=6)
    _fill(dsn, feats, np.arange(30, dtype=np.int64))
    prot, dec = _protector()
    calls = {"n": 0}
    real_call = af.Protector.__call__

    def racing_call(self, features, **kw):  # the application re-enrols row 15 mid-run
        calls["n"] += 1
        if calls["n"] == 2:
            with psycopg.connect(dsn) as c:
                c.execute("UPDATE faces SET embedding = %s WHERE id = 15", (feats[0].tolist(),))
        return real_call(self, features, **kw)

    monkeypatch.setattr(af.Protector, "__call__", racing_call)
    with pytest.raises(ConcurrentUpdateError, match="rolled back"):
        protect_table(dsn, "faces", prot, batch_rows=10, progress=False)
    monkeypatch.undo()
    _, mid = _read(dsn)
    np.testing.assert_array_equal(mid[10:20], np.concatenate([feats[10:15], feats[:1], feats[16:20]]))
    assert table_state(dsn, "faces")["last_id"] == 9
    protect_table(dsn, "faces", prot, batch_rows=10, progress=False)  # resume protects the new value
    fresh = feats.copy()
    fresh[15] = feats[0]
    assert_same_protection(_read(dsn)[1], af.protect(fresh, dec, key=KEY, row_ids=np.arange(30), progress=False))


_KILL_SCRIPT = """
import sys, numpy as np, advface_fast as af
from advface_fast.deploy.postgres_table import protect_table
dec = af.load_model(sys.argv[2])
prot = af.Protector(dec, key=b"test-key-k-0123456789abcdefghijk", progress=False)
protect_table(sys.argv[1], "faces", prot, batch_rows=8, progress=False)
"""


def test_kill_mid_run_then_resume(dsn, tmp_path: Path):
    n = 4000
    feats = unit_rows(n, DIM, seed=7)
    _fill(dsn, feats, np.arange(n, dtype=np.int64))
    dec, _ = make_pair(dim=DIM, hidden=(256, 256))
    af.save_model(dec, tmp_path / "dec.safetensors")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, dsn, str(tmp_path / "dec.safetensors")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            st = table_state(dsn, "faces")
            done = st["rows_done"] if st else 0
            if done >= 200:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    st = table_state(dsn, "faces")
    assert 200 <= st["rows_done"] < n and st["finished_at"] is None
    assert st["rows_done"] == st["last_id"] + 1  # the mark moved with every committed batch
    prot = af.Protector(af.load_model(tmp_path / "dec.safetensors"), key=KEY, progress=False)
    res = protect_table(dsn, "faces", prot, batch_rows=500, progress=False)
    assert res.resumed and res.protected == n - st["rows_done"]
    assert table_state(dsn, "faces")["rows_done"] == n
    want = af.protect(feats, prot.decoder, key=KEY, row_ids=np.arange(n), progress=False)
    assert_same_protection(_read(dsn)[1], want)  # nothing protected twice, nothing skipped


def test_cli_protect_table(dsn, tmp_path, capsys):
    from advface_fast.cli import main

    feats = unit_rows(20, DIM, seed=8)
    _fill(dsn, feats, np.arange(20, dtype=np.int64), "bytea")
    dec, _ = make_pair(dim=DIM)
    af.save_model(dec, tmp_path / "dec.safetensors")
    write_key(tmp_path / "key", KEY)
    argv = ["protect-table", dsn, "public.faces", "--decoder", str(tmp_path / "dec.safetensors")]
    argv += ["--key-file", str(tmp_path / "key"), "--batch-rows", "7", "--no-progress"]
    assert main(argv) == 0
    assert "20 rows protected now" in capsys.readouterr().err
    assert_same_protection(_read(dsn, "bytea")[1], af.protect(feats, dec, key=KEY, row_ids=np.arange(20)))
    assert main([*argv, "--steps", "3"]) == 2
    assert "other settings (steps differ)" in capsys.readouterr().err


def test_a_second_run_on_the_same_column_is_refused_while_the_first_holds_it(dsn, monkeypatch):
    """Two runs on one table could protect a row twice; the second is refused while the first runs."""
    from advface_fast.deploy.postgres_table import ConcurrentRunError

    feats = unit_rows(30, DIM, seed=7)
    _fill(dsn, feats, np.arange(30, dtype=np.int64))
    prot, dec = _protector()
    seen = {}
    real_call = af.Protector.__call__

    def second_run_meanwhile(self, features, **kw):
        if "err" not in seen:
            seen["err"] = None
            try:
                protect_table(dsn, "faces", prot, batch_rows=10, progress=False)
            except ConcurrentRunError as exc:
                seen["err"] = str(exc)
        return real_call(self, features, **kw)

    monkeypatch.setattr(af.Protector, "__call__", second_run_meanwhile)
    protect_table(dsn, "faces", prot, batch_rows=10, progress=False)
    monkeypatch.undo()
    assert seen["err"] and "another protect-table run" in seen["err"]
    assert_same_protection(_read(dsn)[1], af.protect(feats, dec, key=KEY, row_ids=np.arange(30), progress=False))


def test_rows_enrolled_above_the_position_during_a_run_are_protected_before_it_finishes(dsn, monkeypatch):
    feats = unit_rows(40, DIM, seed=8)
    _fill(dsn, feats[:30], np.arange(30, dtype=np.int64))
    prot, dec = _protector()
    calls = {"n": 0}
    real_call = af.Protector.__call__

    def enrol_meanwhile(self, features, **kw):
        calls["n"] += 1
        if calls["n"] == 1:  # new people enrolled after the run's snapshot
            with psycopg.connect(dsn) as c:
                for i in range(30, 40):
                    c.execute("INSERT INTO faces (id, embedding) VALUES (%s, %s)", (i, feats[i].tolist()))
        return real_call(self, features, **kw)

    monkeypatch.setattr(af.Protector, "__call__", enrol_meanwhile)
    res = protect_table(dsn, "faces", prot, batch_rows=10, progress=False)
    monkeypatch.undo()
    assert res.protected == 40 and table_state(dsn, "faces")["finished_at"] is not None
    assert_same_protection(_read(dsn)[1], af.protect(feats, dec, key=KEY, row_ids=np.arange(40), progress=False))


def test_a_mixed_case_table_beside_a_lower_case_one_is_the_one_named(dsn):
    feats = unit_rows(20, DIM, seed=9)
    _fill(dsn, feats, np.arange(20, dtype=np.int64), table='"Faces"')
    _fill(dsn, feats, np.arange(20, dtype=np.int64), table="faces")
    prot, dec = _protector()
    protect_table(dsn, "Faces", prot, batch_rows=8, progress=False)
    np.testing.assert_array_equal(_read(dsn, table="faces")[1], feats)  # the other table untouched
    assert_same_protection(
        _read(dsn, table='"Faces"')[1], af.protect(feats, dec, key=KEY, row_ids=np.arange(20), progress=False)
    )
    assert table_state(dsn, "Faces")["finished_at"] is not None and table_state(dsn, "faces") is None


def test_the_matcher_reads_a_protected_table(dsn, capsys):
    from advface_fast.match import DeploymentConfig, Matcher, open_gallery
    from advface_fast.match.config import SETTING_KEYS

    feats = unit_rows(30, DIM, seed=10)
    _fill(dsn, feats, np.arange(100, 130, dtype=np.int64))
    prot = af.Protector(make_pair(dim=DIM)[0], key=KEY, rotate=True, progress=False)
    url = "postgresql:///?" + "&".join(p.replace(" ", "") for p in dsn.split()) + "#faces"
    with pytest.raises(ValueError, match="no finished protection run"):
        open_gallery(url)
    protect_table(dsn, "faces", prot, batch_rows=8, progress=False)
    s = prot.settings(DIM)
    config = DeploymentConfig(0.5, 1e-3, {k: s[k] for k in SETTING_KEYS}, s["key"], s["decoder"], None)
    gallery = open_gallery(url)
    assert gallery.record["package_version"] and gallery.record["protection"]["transform"]["name"] == "rotation"
    assert gallery.record["rows"] == 30
    m = Matcher(gallery, config, KEY)
    found = m.identify(feats)
    assert [d.enrolment_id for d in found] == list(range(100, 130)) and all(d.accept for d in found)
    from advface_fast.cli import main

    assert main(["info", url]) == 0
    assert "finished protect-table run, 30 rows" in capsys.readouterr().out


def test_database_errors_end_the_cli_with_one_line(dsn, tmp_path, capsys):
    from advface_fast.cli import main

    dec, _ = make_pair(dim=DIM)
    af.save_model(dec, tmp_path / "dec.safetensors")
    write_key(tmp_path / "key", KEY)
    common = ["--decoder", str(tmp_path / "dec.safetensors"), "--key-file", str(tmp_path / "key"), "--no-progress"]
    bad_dsn = dsn.replace("dbname=", "dbname=no_such_db_")
    assert main(["protect-table", bad_dsn, "faces", *common]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err and "no_such_db_" in err


def test_service_enrols_into_a_protected_table_keeping_its_mark(dsn, tmp_path):
    """The service's PostgreSQL gallery: protected rows and the mark in one transaction; refused
    while clear rows wait above the mark; the matcher and a rerun of protect-table agree."""
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from advface_fast.deploy.postgres_table import read_protected_table
    from advface_fast.deploy.service import ServiceConfig, local_service
    from advface_fast.deploy.service.access import DEFAULT_SCOPES, ApiKey, ApiKeys, digest
    from advface_fast.match.config import SETTING_KEYS, DeploymentConfig

    feats = unit_rows(10, DIM, seed=40)
    _fill(dsn, feats, np.arange(10, dtype=np.int64))
    prot, dec = _protector()
    protect_table(dsn, "faces", prot, progress=False)
    s = prot.settings(DIM)
    DeploymentConfig(0.5, 1e-3, {k: s[k] for k in SETTING_KEYS}, None, None, None).save(tmp_path / "dep.json")
    url = f"postgresql:///?{dsn.replace(' ', '&')}#faces"
    cfg = ServiceConfig(gallery=url, deployment=str(tmp_path / "dep.json"), audit_log=str(tmp_path / "audit.jsonl"))
    token = "pg-test-token-0123456789"
    c = TestClient(local_service(dec, None, KEY, ApiKeys([ApiKey("a", DEFAULT_SCOPES, digest(token))]), cfg))
    h = {"Authorization": f"Bearer {token}"}
    new = unit_rows(2, DIM, seed=41)
    r = c.post("/enrol", json={"templates": new.tolist(), "ids": [100, 101], "labels": ["ann", "bo"]}, headers=h)
    assert r.status_code == 200, r.text
    assert c.post("/identify", json={"template": new[1].tolist()}, headers=h).json()["identity"] == "bo"
    ids, z, record = read_protected_table(dsn, "faces")
    assert ids.tolist() == [*range(10), 100, 101] and record["labels"] == {"100": "ann", "101": "bo"}
    want = prot(new, row_ids=np.array([100, 101]))
    assert_same_protection(z[-2:], want)
    assert table_state(dsn, "faces")["last_id"] == 101
    with psycopg.connect(dsn) as conn:  # a clear row appended by someone else, above the mark
        conn.execute("INSERT INTO faces (id, embedding) VALUES (200, %s)", (unit_rows(1, DIM, seed=42)[0].tolist(),))
    r = c.post("/enrol", json={"templates": new[:1].tolist(), "ids": [300]}, headers=h)
    assert r.status_code == 409 and "clear rows above" in r.json()["error"]
    r = c.post("/enrol", json={"templates": new[:1].tolist(), "ids": [5]}, headers=h)
    assert r.status_code == 409 and "already used" in r.json()["error"]
    assert protect_table(dsn, "faces", prot, progress=False).protected == 1  # the clear row, not ours again
    from advface_fast.deploy.postgres_table import LOCK_PREFIX

    with psycopg.connect(dsn) as other:  # a protect-table run holds the column: try again later
        other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (LOCK_PREFIX + "public.faces.embedding",))
        r = c.post("/enrol", json={"templates": new[:1].tolist(), "ids": [400]}, headers=h)
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0, r.text


def test_a_table_protected_under_shard_keys_matches_per_shard(dsn):
    """``protect-table`` with shard keys: each row under its id's shard (as ``protect`` with the
    same ids), the state names the transform, and the matcher identifies every row per shard."""
    from advface_fast.match import DeploymentConfig, Matcher, open_gallery
    from advface_fast.match.config import SETTING_KEYS

    feats = unit_rows(40, DIM, seed=11)
    ids = np.arange(300, 340, dtype=np.int64)
    _fill(dsn, feats, ids)
    dec = make_pair(dim=DIM)[0]
    prot = af.Protector(dec, key=KEY, rotate=True, shards=5, progress=False)
    protect_table(dsn, "faces", prot, batch_rows=8, progress=False)
    _, got = _read(dsn)
    assert_same_protection(got, af.protect(feats, dec, key=KEY, rotate=True, shards=5, row_ids=ids, progress=False))
    url = "postgresql:///?" + "&".join(p.replace(" ", "") for p in dsn.split()) + "#faces"
    gallery = open_gallery(url)
    assert gallery.record["protection"]["transform"]["name"] == "shard-rotation"
    s = prot.settings(DIM)
    config = DeploymentConfig(0.5, 1e-3, {k: s[k] for k in (*SETTING_KEYS, "shards")}, s["key"], s["decoder"], None)
    found = Matcher(gallery, config, KEY).identify(feats)
    assert [d.enrolment_id for d in found] == ids.tolist() and all(d.accept for d in found)
