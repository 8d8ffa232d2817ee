"""The data of a real-faces evaluation, computed once and cached: the protocol's pairs, the aligned
test and training faces, their embeddings by the system encoder E and the judge E2, the
thresholds fitted on clean pairs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics import pair_distances, verification_accuracy
from .faces_config import FacesEvalConfig


def cache_key(*parts: Any) -> str:
    """A short digest of ``parts`` (JSON): the name of a cached model or stage."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _log_skipped(skipped: list[tuple[Path, str]], log: Callable[[str], None]) -> None:
    """Name every file of a photo set that is not an image (never dropped silently)."""
    for f, why in skipped:
        log(f"skipped {f}: {why}")


class FacesData:
    """The protocol, the aligned faces and their embeddings, computed once (cached)."""

    def __init__(self, cfg: FacesEvalConfig, cache: Path, log: Callable[[str], None], progress: bool) -> None:
        from ..data.photo_sets import read_identity_file, read_identity_folder, read_lfw_pairs
        from ..encoders.loader import as_encoder
        from ..faces.align import align_files
        from ..faces.embed import embed_faces, encoder_key, faces_to_tensor
        from ..faces.protocol import pairs_from_identities

        if cfg.test_folder:
            listing = read_identity_folder(cfg.test_folder)
            _log_skipped(listing.skipped, log)
            self.protocol = pairs_from_identities(listing, seed=cfg.seed, pairs_per_identity=cfg.pairs_per_identity)
            pick = "largest"
        elif cfg.pairs:
            self.protocol = read_lfw_pairs(cfg.pairs, cfg.pairs_images)
            pick = "center"
        else:
            raise ValueError("set pairs (an LFW-format pairs file) or test_folder (identity folders)")
        p = self.protocol
        test = align_files(
            p.files, cache_dir=cache, pick=pick, detector=cfg.detector, progress=progress, desc="aligning test faces"
        )
        self.test_counts = test.counts()
        log(f"test set: {len(p.files)} images, {len(p.first)} pairs, alignment {self.test_counts}")
        train_set = (
            read_identity_file(cfg.train_images, cfg.train_identity)
            if cfg.train_identity
            else read_identity_folder(cfg.train_images)
        )
        _log_skipped(train_set.skipped, log)
        train = align_files(
            train_set.files,
            cache_dir=cache,
            pick="largest",
            detector=cfg.detector,
            progress=progress,
            desc="aligning training faces",
        )
        self.train_counts = train.counts()
        keep = train.ok()  # a training face the detector never found is dropped (and counted)
        train_faces = train.faces[keep]
        test_hashes = {hashlib.sha1(f.tobytes()).digest() for f in test.faces}
        self.train_test_duplicates = int(sum(hashlib.sha1(f.tobytes()).digest() in test_hashes for f in train_faces))
        log(
            f"training set: {len(train_set)} images of {len(train_set.names)} people, alignment "
            f"{self.train_counts}; {int((~keep).sum())} without a detected face dropped; "
            f"{self.train_test_duplicates} identical to an evaluated crop"
        )
        self.encoder = as_encoder(cfg.encoder)
        self.encoder_key = encoder_key(self.encoder)
        self.z_test = embed_faces(self.encoder, test.faces, cache_dir=cache, progress=progress, desc="E(test)")
        flipped = np.ascontiguousarray(train_faces[:, :, ::-1])
        self.z_train = torch.cat(
            [
                embed_faces(self.encoder, train_faces, cache_dir=cache, progress=progress, desc="E(train)"),
                embed_faces(self.encoder, flipped, cache_dir=cache, progress=progress, desc="E(train, flipped)"),
            ]
        )
        self.x_train = torch.cat([faces_to_tensor(train_faces, cfg.size), faces_to_tensor(flipped, cfg.size)])
        self.x_test = faces_to_tensor(test.faces, cfg.size)
        self.train_key = cache_key(len(train_faces), hashlib.sha256(train_faces.tobytes()).hexdigest())
        self.judge = None
        self.e2_test = None
        if cfg.judge == "dlib":
            from ..encoders.dlib import DlibEncoder

            self.judge = DlibEncoder()
            self.e2_test = embed_faces(self.judge, test.faces, cache_dir=cache, progress=progress, desc="E2(test)")
        elif cfg.judge != "none":
            raise ValueError(f"judge must be 'dlib' or 'none', got {cfg.judge!r}")
        self.cache = cache

        # the system threshold, fitted on clean pairs (median of the folds' best thresholds, each the
        # middle of its equally accurate range: metrics.verification_accuracy)
        d = pair_distances(self.z_test[p.first], self.z_test[p.second])
        _, _, thr = verification_accuracy(d, p.same, folds=p.fold)
        self.threshold = float(np.median(thr))
        self.e2_threshold = None
        if self.e2_test is not None:
            d2 = pair_distances(self.e2_test[p.first], self.e2_test[p.second])
            acc2, _, thr2 = verification_accuracy(d2, p.same, folds=p.fold)
            self.e2_threshold, self.e2_clean_acc = float(np.median(thr2)), 100 * acc2
        # matched pairs scored for privacy: the first privacy_per_fold of each fold
        matched = np.flatnonzero(p.same)
        self.priv = np.concatenate([matched[p.fold[matched] == f][: cfg.privacy_per_fold] for f in range(p.n_folds)])
        self.judged = np.concatenate([matched[p.fold[matched] == f][: cfg.judge_per_fold] for f in range(p.n_folds)])
        self.enrolled = np.unique(p.first)  # test files stored as templates
