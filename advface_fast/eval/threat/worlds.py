"""The worlds the threat driver runs in (:class:`~.driver.ThreatWorld`): the synthetic-face world
and real photographs, each with its two judges.

Both judge a reconstruction twice: by E at the system threshold (``identity_inference_E``) and by
E2, a recogniser no defender or attacker uses, at its own threshold (``identity_inference_E2``);
``rank1_E`` is the share of reconstructions whose nearest probe under E is the person's, ``ssim``
their structural similarity to the enrolled face.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.world import IDS
from ...encoders.base import TorchEncoder
from ...encoders.embed import embed
from ...metrics import pair_distances, ssim_skimage, verification_accuracy
from ...metrics.operating_point import protected_gallery_operating_points
from ...train.encoder import train_encoder
from ..faces import _operating_sets, attack_scores
from ..faces_data import FacesData
from ..model_cache import cached_model
from ..synthetic_world import SyntheticWorld
from .base import Attack
from .driver import Defence


class SyntheticThreatWorld(SyntheticWorld):
    """The synthetic world (:class:`~advface_fast.eval.synthetic_world.SyntheticWorld`) with E2: an
    encoder of another width trained separately on other images of the training identities
    (cached in ``cache``), its threshold fitted like E's, and both judges' wrong-person rates
    (``chance``: how often an impostor pair is accepted)."""

    def __init__(
        self,
        users: int,
        attacker_ids: int,
        attacker_per_id: int,
        seed: int,
        judge: tuple[int, int, int],
        cache: Path,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(users, attacker_ids, attacker_per_id, seed)
        judge_ids, judge_per_id, judge_epochs = judge

        def train_judge() -> torch.nn.Module:
            x, y = self.models.world.dataset(judge_ids, judge_per_id, id_offset=IDS["train"], var_offset=40)
            t = time.time()
            model, _ = train_encoder(x, y, width=32, epochs=judge_epochs, seed=11, progress=False, log=lambda s: None)
            log(f"judge E2 trained in {time.time() - t:.0f} s")
            return model

        path = cache / f"judge-{judge_ids}x{judge_per_id}-e{judge_epochs}.safetensors"
        self.judge = TorchEncoder(cached_model(path, train_judge, lambda s: None, "judge E2"))
        self.e2_probe = embed(self.judge, self.x_probe, flip=False)
        e2_enrol = embed(self.judge, self.x_enrol, flip=False)
        acc2, _, thr2 = verification_accuracy(pair_distances(e2_enrol[self.pi], self.e2_probe[self.pj]), self.same)
        self.e2_threshold, self.e2_acc = float(np.median(thr2)), 100 * acc2
        imp = ~self.same
        d_imp = pair_distances(self.z_enrol[self.pi[imp]], self.z_probe[self.pj[imp]])
        d2_imp = pair_distances(e2_enrol[self.pi[imp]], self.e2_probe[self.pj[imp]])
        self.chance = 100 * float((d_imp < self.threshold).mean()), 100 * float((d2_imp < self.e2_threshold).mean())
        log(f"E threshold {self.threshold:.3f}; E2 accuracy {self.e2_acc:.2f}%, threshold {self.e2_threshold:.3f}")

    def utility(self, defence: Defence) -> dict[str, Any]:
        acc, std, _ = verification_accuracy(pair_distances(defence.stored[self.pi], defence.probes[self.pj]), self.same)
        n = len(self.z_enrol)
        same = np.eye(n, dtype=bool)  # person i enrolled as row i, probed as row i; every other pair an impostor
        op = protected_gallery_operating_points(
            defence.stored.numpy(), self.z_enrol.numpy(), self.z_probe.numpy(), same,
            protected_probes=defence.probes.numpy(),
        )  # fmt: skip
        return {"acc": 100 * acc, "acc_std": 100 * std, "operating_point": op}

    def score(self, attack: Attack, stored: torch.Tensor, people: int | None, label: str) -> dict[str, float]:
        idx = torch.arange(len(self.z_enrol) if people is None else min(people, len(self.z_enrol)))
        rec = attack.reconstruct(stored if people is None else stored[idx])
        inference, rank1 = self.inference_and_rank1(self.encoder, self.z_probe, self.threshold, rec, idx)
        inference2, _ = self.inference_and_rank1(self.judge, self.e2_probe, self.e2_threshold, rec, idx)
        return {
            "identity_inference_E": inference,
            "identity_inference_E2": inference2,
            "rank1_E": rank1,
            "ssim": float(ssim_skimage(rec, self.x_enrol[idx]).mean()),
            "people": len(idx),
        }


class FacesThreatWorld:
    """Real photographs as :func:`~advface_fast.eval.faces.prepare` lays them out (``data``): the
    protocol's first images are enrolled, its second the probes; the privacy pairs are judged by
    E and by the independent judge (dlib). ``people`` limits an attack to the first judged pairs."""

    def __init__(self, data: FacesData, progress: bool) -> None:
        if data.judge is None:
            raise ValueError("the threat suite needs the independent judge (faces.judge = 'dlib')")
        self.data, self.progress = data, progress

    def utility(self, defence: Defence) -> dict[str, Any]:
        p = self.data.protocol
        d = pair_distances(defence.stored[p.first], defence.probes[p.second])
        acc, std, _ = verification_accuracy(d, p.same, folds=p.fold)
        g, q, same, valid = _operating_sets(self.data)
        z = self.data.z_test
        op = protected_gallery_operating_points(
            defence.stored[g].numpy(), z[g].numpy(), z[q].numpy(), same, valid,
            protected_probes=defence.probes[q].numpy(),
        )  # fmt: skip
        return {"acc": 100 * acc, "acc_std": 100 * std, "operating_point": op}

    def score(self, attack: Attack, stored: torch.Tensor, people: int | None, label: str) -> dict[str, float]:
        data = self.data
        if people is not None:  # the first judged pairs only, all of them judged by E2
            data = copy.copy(self.data)
            data.priv = data.judged = self.data.judged[:people]
        return attack_scores(data, attack.reconstruct, stored, self.progress, f"threat|{label}")[0]
