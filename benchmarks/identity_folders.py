"""Lay out a flat image folder with a ``<file> <identity>`` list (CelebA's layout) as one folder per
identity, of symbolic links to the original files (nothing copied), the layout ``--test-folder``
and ``--train-images`` read:

    python benchmarks/identity_folders.py IMAGES IDENTITY_TXT DEST

``DEST/<identity>/<file>`` links to ``IMAGES/<file>``. DEST must not exist yet (no half-written
layout is ever mixed into an old one: the links are made in a temporary folder beside DEST and
renamed into place). Used to check the evaluation on the CelebA subset as identity folders
(``benchmarks/results/eval-celeba-folders-mobilefacenet/``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from advface_fast.data.photo_sets import read_identity_file


def make_identity_folders(images: str | os.PathLike[str], identity_txt: str | os.PathLike[str], dest: Path) -> int:
    """Write the links; returns the number of images laid out."""
    if dest.exists():
        raise FileExistsError(f"{dest} exists; give a new folder")
    labelled = read_identity_file(images, identity_txt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for f, label in zip(labelled.files, labelled.labels, strict=True):
            folder = tmp / labelled.names[int(label)]
            folder.mkdir(exist_ok=True)
            (folder / Path(f).name).symlink_to(Path(f).resolve())
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(labelled.files)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    n = make_identity_folders(argv[0], argv[1], Path(argv[2]))
    print(f"{n} images laid out under {argv[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
