"""Streaming to .npy: equals in-memory, bounded by batches, resumable, atomic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_pair, unit_rows

import advface_fast as af
from advface_fast import protector as protector_mod
from advface_fast.io import streaming

KW = {"eps": 0.05, "alpha": 0.01, "steps": 3, "progress": False, "batch_size": 16}


@pytest.fixture
def setup(tmp_path):
    dec, enc = make_pair(seed=31)
    z = unit_rows(150, 24, seed=32)
    src = tmp_path / "gallery.npy"
    np.save(src, z)
    return dec, enc, z, src, tmp_path / "protected.npy"


def test_streaming_equals_in_memory(setup):
    dec, enc, z, src, out = setup
    mem = af.protect(z, dec, enc, **KW)
    res = af.protect(src, dec, enc, out=out, **KW)
    assert isinstance(res, np.memmap)
    np.testing.assert_array_equal(np.load(out), mem)
    assert not streaming.partial_paths(out)[0].exists() and not streaming.partial_paths(out)[1].exists()
    # an in-memory input streamed to disk too
    out2 = out.with_name("p2.npy")
    af.protect(z, dec, enc, out=out2, **KW)
    np.testing.assert_array_equal(np.load(out2), mem)


class Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, calls: int):
    real = protector_mod.protect_batch
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise Interrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(protector_mod, "protect_batch", flaky)
    return count


@pytest.mark.parametrize("graceful", [True, False])
def test_resume_after_interruption(setup, monkeypatch, graceful):
    """graceful: an exception reaches the sink (state checkpointed at the failure). Not graceful: a
    kill -9 (simulated: no final checkpoint, state only from the periodic checkpoints)."""
    dec, enc, z, src, out = setup
    full = af.protect(z, dec, enc, **KW)
    monkeypatch.setattr(streaming, "CHECKPOINT_SECONDS", 0.0 if graceful else 1e9)
    if not graceful:
        # a killed process writes no final checkpoint; the OS closes its files (and drops its lock)
        monkeypatch.setattr(streaming.NpyFileSink, "abort", lambda self: (self.writer.close(), self.lock.release()))
    _interrupt_after(monkeypatch, 4)
    with pytest.raises(Interrupt):
        af.protect(src, dec, enc, out=out, **KW)
    data, state = streaming.partial_paths(out)
    assert not out.exists(), "the final name must appear only when complete"
    assert data.exists() and state.exists()
    rows_done = json.loads(state.read_text())["rows_done"]
    assert rows_done == (4 * 16 if graceful else 0)
    monkeypatch.undo()
    count = _interrupt_after(monkeypatch, 10**9)
    af.protect(src, dec, enc, out=out, **KW)
    np.testing.assert_array_equal(np.load(out), full)
    assert count["n"] == -(-(150 - rows_done) // 16), "resume must start where the checkpoint says"
    assert not data.exists() and not state.exists()


def test_resume_refuses_other_settings_and_can_restart(setup, monkeypatch):
    dec, enc, z, src, out = setup
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        af.protect(src, dec, enc, out=out, **KW)
    monkeypatch.undo()
    with pytest.raises(af.ResumeMismatchError, match="eps"):
        af.protect(src, dec, enc, out=out, **{**KW, "eps": 0.06})
    other = make_pair(seed=99)[0]
    with pytest.raises(af.ResumeMismatchError, match="decoder"):
        af.protect(src, other, enc, out=out, **KW)
    assert not out.exists()
    res = af.protect(src, dec, enc, out=out, resume=False, **{**KW, "eps": 0.06})
    np.testing.assert_array_equal(res, af.protect(z, dec, enc, **{**KW, "eps": 0.06}))


def test_resume_fingerprints_the_encoder_only_for_the_shadow_start(setup, monkeypatch):
    dec, enc, z, src, out = setup
    full = af.protect(z, dec, **KW)  # start="random" never calls an encoder
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        af.protect(src, dec, enc, out=out, **KW)
    monkeypatch.undo()
    np.testing.assert_array_equal(af.protect(src, dec, out=out, **KW), full)  # resumed without --encoder
    shadow = {**KW, "start": "shadow"}
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupt):
        af.protect(src, dec, enc, out=out.with_name("shadow.npy"), **shadow)
    monkeypatch.undo()
    with pytest.raises(af.ResumeMismatchError, match="encoder"):
        af.protect(src, dec, make_pair(seed=98)[1], out=out.with_name("shadow.npy"), **shadow)


def test_overwrite(setup):
    dec, enc, z, src, out = setup
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite"):
        af.protect(src, dec, enc, out=out, **KW)
    assert out.read_bytes() == b"old"
    af.protect(src, dec, enc, out=out, overwrite=True, **KW)
    assert np.load(out).shape == z.shape


def test_float64_and_bfloat16_outputs(setup, tmp_path):
    import torch

    dec, enc, z, _, _ = setup
    af.protect(z.astype(np.float64), dec, enc, out=tmp_path / "f64.npy", **KW)
    assert np.load(tmp_path / "f64.npy").dtype == np.float64
    af.protect(torch.from_numpy(z).bfloat16(), dec, enc, out=tmp_path / "bf16.npy", **KW)
    assert np.load(tmp_path / "bf16.npy").dtype == np.float32  # numpy has no bfloat16


def test_resume_refuses_an_edited_row_even_with_the_timestamp_restored(setup, monkeypatch):
    import os

    dec, enc, z, src, out = setup
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupt):
        af.protect(src, dec, enc, out=out, **KW)
    monkeypatch.undo()
    st = os.stat(src)
    edited = np.load(src)
    edited[17, 5] += 1e-3  # a done row that 64 evenly sampled rows would miss
    np.save(src, edited)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(af.ResumeMismatchError, match="input"):
        af.protect(src, dec, enc, out=out, **KW)
    os.utime(src)  # a touch alone (no edit) of the original content resumes
    np.save(src, z)
    af.protect(src, dec, enc, out=out, **KW)
    np.testing.assert_array_equal(np.load(out), af.protect(z, dec, enc, **KW))
