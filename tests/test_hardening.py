"""Hostile files, racing writers and silent non-protection (the hardening issue's classes 1, 3, 4
and 9): each must give a clear error and change nothing it should not."""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

import advface_fast as af
from advface_fast.errors import NonFiniteError, PublicRandomnessWarning
from advface_fast.io import streaming

KW = {"eps": 0.05, "alpha": 0.01, "steps": 2, "progress": False, "key": b"test-key-h-0123456789abcdefghijk"}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PublicRandomnessWarning)
        yield


@pytest.fixture
def gallery(tmp_path):
    torch.manual_seed(0)
    dec = af.MLPDecoder(12, [16], (3, 4, 4))
    z = torch.nn.functional.normalize(torch.randn(40, 12), dim=1).numpy()
    np.save(tmp_path / "in.npy", z)
    return dec, z, tmp_path


def test_a_planted_symlink_at_the_partial_file_is_not_followed(gallery):
    dec, z, d = gallery
    victim = d / "victim.bin"
    victim.write_bytes(b"precious")
    out = d / "out.npy"
    data, state = streaming.partial_paths(out)
    os.symlink(d / "in.npy", data)  # at the partial data file: the input gallery
    os.symlink(victim, state)  # and at the state file
    before = (d / "in.npy").read_bytes()
    res = af.protect(str(d / "in.npy"), dec, out=out, **KW)
    assert (d / "in.npy").read_bytes() == before and victim.read_bytes() == b"precious"
    assert not out.is_symlink() and res.shape == z.shape
    np.testing.assert_allclose(np.load(out), af.protect(z, dec, **KW))


def test_a_symlink_at_the_output_name_is_replaced_not_written_through(gallery):
    dec, _z, d = gallery
    victim = d / "victim.npy"
    np.save(victim, np.zeros(3))
    os.symlink(victim, d / "out.npy")
    af.protect(str(d / "in.npy"), dec, out=d / "out.npy", overwrite=True, **KW)
    assert np.load(victim).tolist() == [0, 0, 0]
    assert not (d / "out.npy").is_symlink()


def test_a_second_writer_to_the_same_output_is_refused(gallery):
    dec, _z, d = gallery
    out = d / "out.npy"
    lock = streaming.OutputLock(out)  # another run holds the output
    try:
        with pytest.raises(FileExistsError, match="another run is writing"):
            af.protect(str(d / "in.npy"), dec, out=out, resume=False, **KW)
        assert not out.exists() and not streaming.partial_paths(out)[0].exists()
    finally:
        lock.release()
    af.protect(str(d / "in.npy"), dec, out=out, **KW)
    assert out.exists() and not out.with_name(out.name + ".lock").exists()


@pytest.mark.parametrize("backend", ["torch", "mlp", "triton"])  # every backend that runs on a CPU
def test_a_nan_decoder_is_an_error_not_the_start_point(gallery, backend):
    reason = af.available_backends(device="cpu")[backend]
    if reason is not None:
        pytest.skip(reason)
    _dec, z, d = gallery
    bad = af.MLPDecoder(12, [16], (3, 4, 4))
    with torch.no_grad():
        bad.layers[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="shadow decoder produced NaN"):
        af.protect(z, bad, backend=backend, **KW)
    with pytest.raises(NonFiniteError):
        af.protect(str(d / "in.npy"), bad, backend=backend, out=d / "o.npy", **KW)
    assert not (d / "o.npy").exists()


def test_a_nan_encoder_and_overflowing_settings_are_errors(gallery):
    dec, z, _ = gallery

    def nan_encoder(x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 12), float("nan"))

    with pytest.raises(NonFiniteError, match="encoder returned NaN"):
        af.protect(z, dec, nan_encoder, start="shadow", **KW)
    with pytest.raises(NonFiniteError, match="out of range"):
        af.protect(z, dec, **{**KW, "eps": 1e300, "alpha": 1e300})
    big = af.protect(z * np.float32(1e20), dec, **KW)  # protection is defined on the direction
    np.testing.assert_allclose(big / 1e20, af.protect(z, dec, **KW), rtol=0, atol=1e-5)
    with pytest.raises(NonFiniteError, match="overflows"):
        af.protect(z / np.abs(z).max(1, keepdims=True) * np.float32(3.4e38), dec, **KW)


@pytest.mark.parametrize("name", ["../victim.txt", "/etc/hostname", "sub/x.npy", "..", "a\\b", "x\0y", 3])
def test_a_run_manifest_cannot_reach_outside_its_folder(tmp_path, name):
    import json

    from advface_fast.distributed.run_state import MANIFEST, open_run, publish
    from advface_fast.errors import ResumeMismatchError

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    manifest = {"version": 1, "status": "complete", "run": {}, "tasks": [], "outputs": [name]}
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ResumeMismatchError, match="not a plain file name"):
        open_run(out, {"x": 1}, [[0, 1]], ["part-0.npy"], overwrite=True, resume=True)
    with pytest.raises(ResumeMismatchError, match="not a plain file name"):
        publish(out, manifest)
    assert victim.read_text() == "precious"


def test_cli_failures_are_one_line_and_a_status(gallery, capsys, monkeypatch):
    from advface_fast.cli import app as cli

    dec, _z, d = gallery
    af.save_model(dec, d / "d.safetensors")
    base = ["protect", str(d / "in.npy"), "--decoder", str(d / "d.safetensors"), "--no-progress"]
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere; the OSError path is checked below either way
            assert cli.main([*base[:2], str(ro / "p.npy"), *base[2:]]) == 2
    finally:
        ro.chmod(0o700)
    if not torch.cuda.is_available():
        assert cli.main([*base[:2], str(d / "p.npy"), *base[2:], "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err

    def raising(exc):
        def f(args):
            raise exc

        return f

    for exc, status in ((OSError(28, "No space left on device"), 2), (KeyboardInterrupt(), 130)):
        monkeypatch.setattr(cli, "_protect", raising(exc))  # main() builds its parser afresh
        assert cli.main([*base[:2], str(d / "p.npy"), *base[2:]]) == status
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_raw_python_errors_become_the_package_s_own(gallery):
    import json

    from safetensors.torch import save_file

    from advface_fast.errors import ModelFormatError

    dec, z, d = gallery
    with pytest.raises(ValueError, match="no parameters"):
        af.protect(z, torch.nn.Identity(), **KW)
    for seed in (2**64, -1):
        with pytest.raises(ValueError, match="seed must be in"):
            af.protect(z, dec, **{**KW, "seed": seed})
    (d / "outdir.npy").mkdir()
    with pytest.raises(IsADirectoryError, match="directory"):
        af.protect(str(d / "in.npy"), dec, out=d / "outdir.npy", **KW)
    af.save_model(dec, d / "ok.safetensors")
    good = {k: v.clone() for k, v in dec.state_dict().items()}
    meta = {"advface_fast.format": "1", "advface_fast.class": "MLPDecoder"}
    meta["advface_fast.config"] = json.dumps(dec.config())
    cases = {
        "half": ({k: v.half() for k, v in good.items()}, meta, "stored as torch.float16"),
        "nan": ({**good, "layers.0.weight": good["layers.0.weight"] * float("nan")}, meta, "NaN or Inf"),
        "inf-config": (good, {**meta, "advface_fast.config": json.dumps({**dec.config(), "in_dim": 1e400})}, "rebuild"),
        "negative": (good, {**meta, "advface_fast.config": json.dumps({**dec.config(), "hidden": [-4]})}, "rebuild"),
    }
    for name, (tensors, md, msg) in cases.items():
        save_file(tensors, str(d / f"{name}.safetensors"), metadata=md)
        with pytest.raises(ModelFormatError, match=msg):
            af.load_model(d / f"{name}.safetensors")


def test_a_small_file_asking_for_a_huge_model_is_refused_before_allocating(tmp_path):
    import json
    import resource

    from safetensors.torch import save_file

    from advface_fast.errors import ModelFormatError

    dec = af.MLPDecoder(8, [4], (1, 2, 2))
    meta = {"advface_fast.format": "1", "advface_fast.class": "MLPDecoder"}
    # 60,000 x 60,000 hidden weights would be 14 GB of float32: far above what this process may use
    meta["advface_fast.config"] = json.dumps({**dec.config(), "hidden": [60_000, 60_000]})
    save_file(
        {k: v.contiguous() for k, v in dec.state_dict().items()}, str(tmp_path / "bomb.safetensors"), metadata=meta
    )
    assert (tmp_path / "bomb.safetensors").stat().st_size < 10_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelFormatError, match="nothing was allocated"):
        af.load_model(tmp_path / "bomb.safetensors")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: < 200 MB more


def test_a_bin_of_one_huge_image_referenced_many_times_is_refused_from_its_headers(tmp_path):
    import io
    import pickle
    import resource

    from PIL import Image

    from advface_fast.data.readers import decode_image, read_insightface_bin
    from advface_fast.errors import GalleryFormatError

    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000)).save(buf, format="PNG")  # compresses to a few tens of KB
    big = buf.getvalue()
    assert len(big) < 300_000
    path = tmp_path / "bomb.bin"
    path.write_bytes(pickle.dumps(([big] * 30, [True] * 15), protocol=2))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(GalleryFormatError, match="above the bound"):
        read_insightface_bin(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    with pytest.raises(GalleryFormatError, match="decode to more than"):  # each allowed, the sum not
        read_insightface_bin(path, max_pixels=40_000_000, max_total_bytes=10**9)
    with pytest.raises(GalleryFormatError, match="max_pixels"):
        decode_image(big)
    small = io.BytesIO()
    Image.new("RGB", (8, 8)).save(small, format="PNG")
    assert decode_image(small.getvalue()).shape == (8, 8, 3)


def test_npy_format_3_and_garbage_headers(tmp_path):
    import struct

    from advface_fast.errors import GalleryFormatError
    from advface_fast.io.npy import read_npy_header

    z = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), }"
    pad = 64 - (12 + len(header) + 1) % 64
    text = (header + " " * pad + "\n").encode("utf8")
    (tmp_path / "v3.npy").write_bytes(b"\x93NUMPY\x03\x00" + struct.pack("<I", len(text)) + text + z.tobytes())
    assert read_npy_header(tmp_path / "v3.npy")[:2] == (np.dtype("<f4"), (4, 6))
    for n, garbage in enumerate((b"{'descr': '<f4', 'shape': (4, \x00", b"\xff\xfe\xfa", b"(lambda: 1)()")):
        body = garbage.ljust(118) + b"\n"
        path = tmp_path / f"g{n}.npy"
        path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body)
        with pytest.raises(GalleryFormatError, match=f"g{n}.npy"):
            read_npy_header(path)


def test_a_meta_tensor_is_refused_by_name(gallery):
    dec, _z, _d = gallery
    with pytest.raises(ValueError, match="meta device"):
        af.protect(torch.empty(3, 12, device="meta"), dec, **KW)


def test_an_unreadable_ids_sidecar_is_named(tmp_path):
    from advface_fast.distributed.gallery import scan_gallery
    from advface_fast.errors import GalleryFormatError

    np.save(tmp_path / "part-0.npy", np.ones((3, 4), np.float32))
    (tmp_path / "part-0.ids.npy").write_bytes(b"not an npy file")
    with pytest.raises(GalleryFormatError, match=r"part-0\.ids\.npy"):
        scan_gallery(tmp_path, "feature", "id")


def test_a_shard_edited_with_its_timestamp_restored_is_a_different_run(tmp_path):
    from advface_fast.distributed.gallery import scan_gallery

    z = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    path = tmp_path / "part-0.npy"
    np.save(path, z)
    _, before = scan_gallery(tmp_path, "feature", "id")
    st = os.stat(path)
    z[3, 1] += 1e-3
    np.save(path, z)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, after = scan_gallery(tmp_path, "feature", "id")
    assert before[0].size == after[0].size and before[0].to_json() != after[0].to_json()


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\x80\x04r" + (134_217_728).to_bytes(4, "little"), "memo index"),  # LONG_BINPUT: a 2.3 GB memo
        (b"\x80\x05\x96" + (2**40).to_bytes(8, "little"), "past the end"),  # BYTEARRAY8
        (b"\x80\x04\x95" + (2**40).to_bytes(8, "little"), "frame"),  # FRAME
        (b"\x80\x04\x8e" + (2**62).to_bytes(8, "little"), "past the end"),  # BINBYTES8
        (b"\x80\x04]\x94.", "pair"),  # an empty list
        (b"\x80\x04(]]t.", "no images"),  # empty fields
        (pickle.dumps(([b"x", b"y"], 5), protocol=4), "list of booleans"),  # issame an int
        (b"\x80\x04", "not an insightface"),  # truncated
    ],
)
def test_a_hostile_insightface_bin_is_refused_before_any_large_allocation(tmp_path, payload, match):
    from advface_fast.data.readers import read_insightface_bin
    from advface_fast.errors import GalleryFormatError

    (tmp_path / "x.bin").write_bytes(payload)
    with pytest.raises(GalleryFormatError, match=match):
        read_insightface_bin(tmp_path / "x.bin")
