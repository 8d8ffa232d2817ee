"""Real-face data plumbing on tiny generated folders: readers, the pair protocol, the alignment and
embedding caches, fold-aware verification. No dataset is needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advface_fast.data.photo_sets import read_identity_file, read_identity_folder, read_lfw_pairs
from advface_fast.errors import GalleryFormatError
from advface_fast.faces.embed import embed_faces
from advface_fast.faces.protocol import pairs_from_identities
from advface_fast.metrics import verification_accuracy


def _jpg(path, seed: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _lfw(tmp_path, folds: int = 2, per: int = 2):
    """An LFW-layout tree with a valid pairs.txt of ``folds`` x (``per`` matched + ``per`` mismatched)."""
    root = tmp_path / "lfw-deepfunneled"
    lines = [f"{folds}\t{per}"]
    for f in range(folds):
        for k in range(per):
            name = f"Person_{f}_{k}"
            lines.append(f"{name}\t1\t2")
        for k in range(per):
            lines.append(f"Person_{f}_{k}\t1\tOther_{f}_{k}\t1")
    for ln in lines[1:]:
        parts = ln.split("\t")
        names = (
            [(parts[0], parts[1]), (parts[0], parts[2])]
            if len(parts) == 3
            else [(parts[0], parts[1]), (parts[2], parts[3])]
        )
        for name, i in names:
            p = root / name / f"{name}_{int(i):04d}.jpg"
            if not p.exists():
                _jpg(p, hash((name, i)) % 1000)
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.txt"


def test_lfw_pairs_are_parsed_with_folds_and_unique_files(tmp_path):
    p = read_lfw_pairs(_lfw(tmp_path))
    assert len(p.first) == 8 and p.n_folds == 2
    assert p.same.tolist() == [True, True, False, False] * 2
    assert p.fold.tolist() == [0] * 4 + [1] * 4
    # matched pair 0 is Person_0_0 images 1 and 2; the mismatched pair 2 reuses Person_0_0_0001
    assert p.files[p.first[0]].name == "Person_0_0_0001.jpg" and p.files[p.second[0]].name == "Person_0_0_0002.jpg"
    assert p.first[2] == p.first[0]
    assert len(set(p.files)) == len(p.files)
    assert all(p.person[p.first[k]] == p.person[p.second[k]] for k in np.flatnonzero(p.same))


def test_lfw_pairs_errors_name_the_problem(tmp_path):
    path = _lfw(tmp_path)
    text = path.read_text().splitlines()
    (tmp_path / "short.txt").write_text("\n".join(text[:-1]))
    with pytest.raises(GalleryFormatError, match="expected 2 x 2 x 2"):
        read_lfw_pairs(tmp_path / "short.txt", tmp_path / "lfw-deepfunneled")
    swapped = [text[0], text[3], text[2], text[1], *text[4:]]  # a mismatched line in the matched half
    (tmp_path / "swapped.txt").write_text("\n".join(swapped))
    with pytest.raises(GalleryFormatError, match="out of place"):
        read_lfw_pairs(tmp_path / "swapped.txt", tmp_path / "lfw-deepfunneled")
    os.remove(tmp_path / "lfw-deepfunneled" / "Person_1_1" / "Person_1_1_0002.jpg")
    with pytest.raises(FileNotFoundError, match="1 images named"):
        read_lfw_pairs(path)


def test_identity_folder_and_identity_file(tmp_path):
    for ident, n in (("b", 3), ("a", 2), ("c", 1)):
        for k in range(n):
            _jpg(tmp_path / "folder" / ident / f"{k}.jpg", k)
    data = read_identity_folder(tmp_path / "folder")
    assert data.names == ["a", "b", "c"] and data.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert read_identity_folder(tmp_path / "folder", min_per_identity=2).names == ["a", "b"]
    flat = tmp_path / "flat"
    for k in range(4):
        _jpg(flat / f"{k:06d}.jpg", k)
    (tmp_path / "identity.txt").write_text("000000.jpg 17\n000001.jpg 3\n000002.jpg 17\n000003.jpg 3\n")
    data = read_identity_file(flat, tmp_path / "identity.txt")
    assert data.names == ["3", "17"] and data.labels.tolist() == [0, 0, 1, 1]
    assert [f.name for f in data.files] == ["000001.jpg", "000003.jpg", "000000.jpg", "000002.jpg"]
    (tmp_path / "bad.txt").write_text("000000.jpg\n")
    with pytest.raises(GalleryFormatError, match=r"bad\.txt:1"):
        read_identity_file(flat, tmp_path / "bad.txt")


@pytest.mark.slow
def test_an_identity_list_laid_out_as_identity_folders_reads_back_the_same(tmp_path):
    """benchmarks/identity_folders.py: CelebA's layout as identity folders of links, read back by
    the folder reader with the same files per identity; an existing destination is refused."""
    flat = tmp_path / "flat"
    for k in range(5):
        _jpg(flat / f"{k:06d}.jpg", k)
    (tmp_path / "identity.txt").write_text("000000.jpg 17\n000001.jpg 3\n000002.jpg 17\n000003.jpg 3\n000004.jpg 9\n")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "identity_folders.py"
    dest = tmp_path / "by_id"
    run = subprocess.run(
        [sys.executable, script, flat, tmp_path / "identity.txt", dest], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    listed, folders = read_identity_file(flat, tmp_path / "identity.txt"), read_identity_folder(dest)
    assert sorted(folders.names) == sorted(listed.names)
    for name in listed.names:
        want = {f.resolve() for f, y in zip(listed.files, listed.labels, strict=True) if listed.names[y] == name}
        got = {f.resolve() for f, y in zip(folders.files, folders.labels, strict=True) if folders.names[y] == name}
        assert got == want
    again = subprocess.run(
        [sys.executable, script, flat, tmp_path / "identity.txt", dest], capture_output=True, text=True
    )
    assert again.returncode != 0 and "exists" in again.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".by_id")] == []  # no half-written layout


def test_identity_folder_as_collections_are_copied_around(tmp_path):
    root = tmp_path / "faces"
    _jpg(root / "ann" / "0.jpg", 0)
    _jpg(root / "ann" / "2019" / "1.JPG", 1)  # an identity's images in nested session folders
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "ann" / "scan.tif")
    _jpg(root / "bob" / "0.jpeg", 2)
    (root / "bob" / "._0.jpeg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork
    (root / "bob" / ".DS_Store").write_bytes(b"Bud1")
    (root / "bob" / "notes.txt").write_text("not an image")
    _jpg(root / "bob" / ".ipynb_checkpoints" / "0.jpg", 3)
    _jpg(root / "__MACOSX" / "bob" / "0.jpg", 4)
    _jpg(root / ".trash" / "0.jpg", 5)
    _jpg(root / "loose.jpg", 6)  # directly in the root: no identity
    data = read_identity_folder(root)
    assert data.names == ["ann", "bob"] and data.labels.tolist() == [0, 0, 0, 1]
    assert [f.relative_to(root).as_posix() for f in data.files] == [
        "ann/0.jpg",
        "ann/2019/1.JPG",
        "ann/scan.tif",
        "bob/0.jpeg",
    ]
    flat = tmp_path / "flat"
    for k in range(3):
        _jpg(flat / f"{k}.jpg", k)
    with pytest.raises(GalleryFormatError, match="its 3 images directly in it belong to no identity"):
        read_identity_folder(flat)


@pytest.mark.parametrize("per_identity", [1, 2, 3])
def test_pairs_from_identities_is_identity_disjoint_across_folds(tmp_path, per_identity):
    for ident in range(25):  # 2, 3 or 6 images: up to 1, 1 or 3 disjoint matched pairs
        for k in range((2, 3, 6)[ident % 3]):
            _jpg(tmp_path / f"id{ident:02d}" / f"{k}.jpg", ident * 10 + k, size=8)
    data = read_identity_folder(tmp_path)
    p = pairs_from_identities(data, n_folds=10, seed=1, pairs_per_identity=per_identity)
    n_six = sum(1 for ident in range(25) if ident % 3 == 2)
    n_matched = 25 + n_six * (min(per_identity, 3) - 1)
    assert p.n_folds == 10 and p.same.sum() == n_matched and (~p.same).sum() == n_matched
    # only the images the pairs use: the first 2 per pair of each identity (the rest are never read)
    used = {f for f in data.files if int(f.stem) < 2 * min(per_identity, (1, 1, 3)[int(f.parent.name[2:]) % 3])}
    assert set(p.files) == used and len(p.files) == len(used)
    # matched pairs share no image: each enrolled template and probe is used by one matched pair
    matched = np.concatenate([p.first[p.same], p.second[p.same]])
    assert len(np.unique(matched)) == len(matched)
    assert all(f.parent.name == name for f, name in zip(p.files, p.person, strict=True))
    label = np.array(p.person)
    for k in range(len(p.first)):
        assert (label[p.first[k]] == label[p.second[k]]) == p.same[k]
        assert p.first[k] != p.second[k]
    for f in range(10):  # no identity appears in two folds
        ids_f = set(label[p.first[p.fold == f]]) | set(label[p.second[p.fold == f]])
        others = set(label[p.first[p.fold != f]]) | set(label[p.second[p.fold != f]])
        assert not ids_f & others
    # a set too small for the folds asked gets as many as it supports (2 people each), stated
    assert pairs_from_identities(data, n_folds=20).n_folds == 12
    few = read_identity_folder(tmp_path, min_per_identity=2)
    small = pairs_from_identities(type(few)(*_people(few, 15)), n_folds=10)  # 15 people: 7 folds (#38)
    assert small.n_folds == 7 and small.same.sum() == 15
    with pytest.raises(ValueError, match="at least 4 identities"):
        pairs_from_identities(type(few)(*_people(few, 3)), n_folds=10)
    with pytest.raises(ValueError, match="pairs_per_identity"):
        pairs_from_identities(data, pairs_per_identity=0)


def _people(data, n: int) -> tuple:
    """The files, labels and names of ``data``'s first ``n`` people."""
    keep = data.labels < n
    return [f for f, k in zip(data.files, keep, strict=True) if k], data.labels[keep], data.names[:n]


def test_verification_accuracy_uses_the_protocol_folds():
    rng = np.random.default_rng(0)
    same = np.tile([True] * 5 + [False] * 5, 4)
    dist = np.where(same, 0.3 + rng.uniform(0, 0.005, 40), rng.uniform(1.5, 2.5, 40))
    folds = np.repeat(np.arange(4), 10)
    acc, std, thr = verification_accuracy(dist, same, folds=folds)
    assert acc == 1.0 and len(thr) == 4 and std == 0
    # one fold of inverted distances costs accuracy in that fold only
    dist[:10] = np.where(same[:10], 2.0, 0.5)
    acc, _, _ = verification_accuracy(dist, same, folds=folds)
    # fold 0: its genuine pairs (2.0) rejected, and its impostors (0.5) accepted: they fall inside the
    # gap the other folds leave between genuine (0.305) and impostor (1.5) pairs, whose middle is fitted
    assert acc == pytest.approx(0.75)
    with pytest.raises(ValueError, match="one fold per pair"):
        verification_accuracy(dist, same, folds=folds[:-1])


class _CountingEncoder:
    def __init__(self, tag: str) -> None:
        self.calls, self.tag = 0, tag

    def fingerprint(self) -> dict:
        return {"name": self.tag}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.nn.functional.normalize(x.flatten(1)[:, :6] + 2, dim=1)


def test_embedding_cache_is_keyed_by_pixels_encoder_and_flip(tmp_path):
    faces = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    enc = _CountingEncoder("a")
    z = embed_faces(enc, faces, cache_dir=tmp_path, progress=False)
    assert enc.calls == 1 and z.shape == (5, 6)
    assert torch.equal(embed_faces(enc, faces, cache_dir=tmp_path, progress=False), z) and enc.calls == 1
    embed_faces(enc, faces, cache_dir=tmp_path, progress=False, flip=True)
    assert enc.calls == 3  # face and mirror
    other = _CountingEncoder("b")
    embed_faces(other, faces, cache_dir=tmp_path, progress=False)
    assert other.calls == 1
    edited = faces.copy()
    edited[2, 3, 3, 0] ^= 1
    embed_faces(enc, edited, cache_dir=tmp_path, progress=False)
    assert enc.calls == 4
    with pytest.raises(TypeError, match="fingerprint"):
        embed_faces(lambda x: x, faces, cache_dir=tmp_path, progress=False)
