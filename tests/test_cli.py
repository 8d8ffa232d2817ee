"""The advface-fast command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import LinearEncoder, make_pair, unit_rows

import advface_fast as af
from advface_fast.cli import main


@pytest.fixture
def files(tmp_path):
    dec, _ = make_pair(seed=51)
    enc = LinearEncoder(90, 24, seed=53)
    af.save_model(dec, tmp_path / "dec.safetensors")
    af.save_model(enc, tmp_path / "enc.safetensors")
    z = unit_rows(40, 24, seed=52)
    np.save(tmp_path / "in.npy", z)
    return tmp_path, dec, z


def test_protect_command(files):
    tmp, dec, z = files
    rc = main(
        [
            "protect",
            str(tmp / "in.npy"),
            str(tmp / "out.npy"),
            "--decoder",
            str(tmp / "dec.safetensors"),
            "--eps",
            "0.05",
            "--alpha",
            "0.01",
            "--steps",
            "3",
            "--start",
            "random",
            "--seed",
            "7",
            "--no-progress",
        ]
    )
    assert rc == 0
    want = af.protect(z, dec, eps=0.05, alpha=0.01, steps=3, start="random", seed=7, progress=False)
    np.testing.assert_array_equal(np.load(tmp / "out.npy"), want)


def test_protect_command_with_encoder_file(files):
    tmp, _, _ = files
    args = [
        "protect",
        str(tmp / "in.npy"),
        str(tmp / "out.npy"),
        "--decoder",
        str(tmp / "dec.safetensors"),
        "--encoder",
        str(tmp / "enc.safetensors"),
        "--eps",
        "0.05",
        "--alpha",
        "0.01",
        "--steps",
        "2",
        "--start",
        "shadow",
        "--no-progress",
    ]
    assert main(args) == 0
    want = af.protect(
        np.load(tmp / "in.npy"),
        af.load_model(tmp / "dec.safetensors"),
        LinearEncoder(90, 24, seed=53),
        eps=0.05,
        alpha=0.01,
        steps=2,
        start="shadow",
        progress=False,
    )
    np.testing.assert_array_equal(np.load(tmp / "out.npy"), want)


def test_errors_exit_2_with_message(files, capsys):
    tmp, _, _ = files
    base = [
        "protect",
        str(tmp / "in.npy"),
        str(tmp / "out.npy"),
        "--decoder",
        str(tmp / "dec.safetensors"),
        "--alpha",
        "0.01",
        "--steps",
        "2",
        "--no-progress",
    ]
    assert main([*base, "--eps", "-1", "--start", "random"]) == 2
    assert "eps must be" in capsys.readouterr().err
    assert main([*base, "--eps", "0.1", "--start", "shadow"]) == 2  # shadow start without --encoder
    assert "needs an encoder" in capsys.readouterr().err
    (tmp / "out.npy").write_bytes(b"x")
    assert main([*base, "--eps", "0.1", "--start", "random"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp / "out.npy").read_bytes() == b"x"


@pytest.mark.slow
def test_help_and_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "advface_fast", "protect", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--eps" in res.stdout and "--decoder" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "advface_fast", "backends", "--device", "cpu"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "\ntorch           available\n" in res.stdout
    assert "auto            for an MLPDecoder: fp32 -> mlp-eager, tf32 -> none, bf16 -> mlp-eager" in res.stdout


def test_train_shadow_command_and_resume(tmp_path, capsys):
    from helpers import LinearEncoder

    enc = LinearEncoder(3 * 16 * 16, 24, seed=3)
    af.save_model(enc, tmp_path / "enc.safetensors")
    args = [
        "train-shadow",
        "--encoder",
        str(tmp_path / "enc.safetensors"),
        "--images",
        "synthetic:12:4:16",
        "--out",
        str(tmp_path / "dec.safetensors"),
        "--hidden",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--checkpoint",
        str(tmp_path / "ck.safetensors"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    dec = af.load_model(tmp_path / "dec.safetensors")
    assert isinstance(dec, af.MLPDecoder) and dec.out_shape == (3, 16, 16) and dec.in_dim == 24
    # a second run finds the finished checkpoint and trains nothing more
    assert main(args) == 0
    assert main([*args[:-2], "--arch", "conv", "--base-channels", "4", "--no-resume", "--device", "cpu"]) == 0
    assert isinstance(af.load_model(tmp_path / "dec.safetensors"), af.ConvDecoder)
    # the checkpoint now belongs to the conv run: another encoder may not resume it, as protect refuses
    af.save_model(LinearEncoder(3 * 16 * 16, 24, seed=4), tmp_path / "enc2.safetensors")
    before = (tmp_path / "ck.safetensors").read_bytes()
    other = [*args[:2], str(tmp_path / "enc2.safetensors"), *args[3:-2], "--arch", "conv", "--base-channels", "4"]
    assert main([*other, "--epochs", "3"]) == 2
    assert "was trained with encoder" in capsys.readouterr().err
    assert (tmp_path / "ck.safetensors").read_bytes() == before  # refused: nothing changed


def test_train_shadow_with_an_identity_loss(tmp_path):
    import torch

    from advface_fast.data import SynthFaces
    from advface_fast.encoders.base import TorchEncoder

    enc = LinearEncoder(3 * 16 * 16, 24, seed=3)
    af.save_model(enc, tmp_path / "enc.safetensors")
    base = ["train-shadow", "--encoder", str(tmp_path / "enc.safetensors"), "--images", "synthetic:12:4:16"]
    base += ["--hidden", "32", "--epochs", "2", "--batch-size", "16", "--no-progress", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "l1.safetensors")]) == 0
    assert main([*base, "--out", str(tmp_path / "id.safetensors"), "--identity-steps", "120"]) == 0
    x = SynthFaces(16).dataset(12, 4)[0]
    e = TorchEncoder(enc)
    z = e(x)

    def cosine(name: str) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cosine_similarity(e(af.load_model(tmp_path / name)(z)), z).mean())

    # the same L1 training, then fine-tuned: E recognises its reconstructions as the templates
    assert isinstance(af.load_model(tmp_path / "id.safetensors"), af.MLPDecoder)
    assert cosine("id.safetensors") > cosine("l1.safetensors") + 0.05


def test_every_option_has_help_and_states_its_default():
    import argparse

    from advface_fast.cli.app import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, cmd in sub.choices.items():
        text = cmd.format_help()
        for a in cmd._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, f"{name} {a.option_strings or a.dest}: no help text"
            if a.option_strings and a.default not in (None, False):
                shown = " ".join(map(str, a.default)) if isinstance(a.default, list) else str(a.default)
                helptext = cmd._get_formatter()._get_help_string(a)
                assert "default" in helptext.lower(), f"{name} {a.option_strings[0]}: default not stated"
                assert shown in text or "default" in (a.help or "").lower(), f"{name} {a.option_strings[0]}"
