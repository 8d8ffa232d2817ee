"""Readers of real formats, on files the tests make: image folders, insightface .bin, .npy images."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from advface_fast import GalleryFormatError
from advface_fast.data import read_image_folder, read_insightface_bin, read_npy_images


def _img(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _encode(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_image_folder(tmp_path):
    arrays = {}
    for who in ("bob", "alice"):
        (tmp_path / who).mkdir()
        for k in range(2):
            arrays[(who, k)] = _img(hash((who, k)) % 1000)
            (tmp_path / who / f"{k}.png").write_bytes(_encode(arrays[(who, k)]))
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    images, labels, names = read_image_folder(tmp_path)
    assert names == ["alice", "bob"] and labels.tolist() == [0, 0, 1, 1]
    assert images.shape == (4, 3, 24, 24) and images.dtype == torch.float32
    want = torch.from_numpy(arrays[("bob", 1)]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(images[3], want)
    resized, _, _ = read_image_folder(tmp_path, size=16)
    assert resized.shape == (4, 3, 16, 16)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image_folder(tmp_path / "missing")
    (tmp_path / "a").mkdir()
    with pytest.raises(GalleryFormatError, match="no images"):
        read_image_folder(tmp_path)
    (tmp_path / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(GalleryFormatError, match=r"x\.png"):
        read_image_folder(tmp_path)
    (tmp_path / "a" / "x.png").write_bytes(_encode(_img(1, 20)))
    (tmp_path / "a" / "y.png").write_bytes(_encode(_img(2, 24)))
    with pytest.raises(GalleryFormatError, match="different sizes"):
        read_image_folder(tmp_path)


def _bin(path, bins, issame, protocol=2):
    path.write_bytes(pickle.dumps((bins, issame), protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("numpy_bools", [False, True])
def test_insightface_bin(tmp_path, protocol, numpy_bools):
    arrays = [_img(i) for i in range(6)]
    bins = [_encode(a, "PNG") for a in arrays]
    issame = [True, False, True]
    if numpy_bools:
        issame = [np.bool_(v) for v in issame]
    images, same = read_insightface_bin(_bin(tmp_path / "lfw.bin", bins, issame, protocol))
    assert images.shape == (6, 3, 24, 24) and same.tolist() == [True, False, True]
    assert torch.allclose(images[5], torch.from_numpy(arrays[5]).permute(2, 0, 1).float() / 127.5 - 1)
    jpeg, _ = read_insightface_bin(_bin(tmp_path / "j.bin", [_encode(a, "JPEG") for a in arrays], issame), size=16)
    assert jpeg.shape == (6, 3, 16, 16)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_bin_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(marker)], [True]), protocol=2))
    with pytest.raises(GalleryFormatError, match="refusing to unpickle"):
        read_insightface_bin(path)
    assert not marker.exists()
    # a numpy array pickled with the labels is not part of the format either
    path.write_bytes(pickle.dumps(([b"x", b"y"], np.array([True])), protocol=2))
    with pytest.raises(GalleryFormatError, match="refusing to unpickle"):
        read_insightface_bin(path)


def test_bin_structure_errors(tmp_path):
    good = [_encode(_img(i)) for i in range(2)]
    with pytest.raises(GalleryFormatError, match="two per pair"):
        read_insightface_bin(_bin(tmp_path / "a.bin", good, [True, False]))
    with pytest.raises(GalleryFormatError, match="list of encoded images"):
        read_insightface_bin(_bin(tmp_path / "b.bin", ["str", "str"], [True]))
    with pytest.raises(GalleryFormatError, match="expected a pair"):
        (tmp_path / "c.bin").write_bytes(pickle.dumps([1, 2, 3]))
        read_insightface_bin(tmp_path / "c.bin")
    (tmp_path / "d.bin").write_bytes(pickle.dumps((good, [True]))[:-7])
    with pytest.raises(GalleryFormatError, match="not an insightface"):
        read_insightface_bin(tmp_path / "d.bin")
    with pytest.raises(GalleryFormatError, match="image 1"):
        read_insightface_bin(_bin(tmp_path / "e.bin", [good[0], b"garbage"], [True]))


def test_npy_images(tmp_path):
    u8 = np.stack([_img(i) for i in range(3)])
    np.save(tmp_path / "u8.npy", u8)
    x = read_npy_images(tmp_path / "u8.npy")
    assert x.shape == (3, 3, 24, 24) and float(x.min()) >= -1
    f = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "f.npy", f)
    np.testing.assert_array_equal(read_npy_images(tmp_path / "f.npy").numpy(), f)
    np.save(tmp_path / "bad.npy", np.zeros((2, 8, 8, 5), np.uint8))
    with pytest.raises(GalleryFormatError, match="expected"):
        read_npy_images(tmp_path / "bad.npy")
