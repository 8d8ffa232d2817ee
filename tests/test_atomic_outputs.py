"""Whole-file outputs (``rotate``, ``index``) never follow a planted file or symlink, and never
replace their own input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_pair, unit_rows, write_key

import advface_fast as af
from advface_fast.cli import main
from advface_fast.io.atomic import atomic_path

KEY = b"atomic-output-test-key-not-secret"


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "o.bin"
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"done")
    assert out.read_bytes() == b"done"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert out.read_bytes() == b"done" and sorted(p.name for p in tmp_path.iterdir()) == ["o.bin"]


@pytest.mark.parametrize("command", ["rotate", "index"])
def test_a_planted_partial_symlink_is_not_followed(tmp_path, command):
    if command == "index":
        pytest.importorskip("faiss")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    g = tmp_path / "g.npy"
    np.save(g, unit_rows(8, 24, seed=1))
    key = write_key(tmp_path / "k.key", KEY)
    out = tmp_path / ("r.npy" if command == "rotate" else "g.faiss")
    for name in (out.name + ".partial", out.name + ".partial.npy"):
        (tmp_path / name).symlink_to(victim)
    if command == "rotate":
        argv = ["rotate", str(g), str(out), "--key-file", str(key)]
    else:
        dec, _ = make_pair(dim=24)
        af.save_model(dec, tmp_path / "dec.safetensors")
        argv = ["index", str(g), str(out), "--decoder", str(tmp_path / "dec.safetensors"), "--key-file", str(key)]
        argv += ["--no-progress"]
    assert main(argv) == 0
    assert victim.read_text() == "precious" and out.is_file() and not out.is_symlink()


@pytest.mark.parametrize("command", ["rotate", "index"])
def test_an_output_that_is_the_input_is_refused(tmp_path, command, capsys):
    g = tmp_path / "g.npy"
    z = unit_rows(8, 24, seed=1)
    np.save(g, z)
    key = write_key(tmp_path / "k.key", KEY)
    argv = [command, str(g), str(g), "--key-file", str(key), "--overwrite"]
    if command == "index":
        dec, _ = make_pair(dim=24)
        af.save_model(dec, tmp_path / "dec.safetensors")
        argv += ["--decoder", str(tmp_path / "dec.safetensors"), "--no-progress"]
    assert main(argv) == 2
    assert "is the input" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(g), z)
