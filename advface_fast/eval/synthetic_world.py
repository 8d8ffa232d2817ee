"""The synthetic-face world of the evaluation and the threat suite, set up once: the shipped
default models, the enrolled people and the attacker's own faces.

Enrolled people are held-out identities (``IDS["heldout"]`` on, never seen by any model):
template = E(image 0), fresh probe = E(image 1). The attacker owns ``attacker_per_id`` images of
each of ``attacker_ids`` other people (``IDS["attacker"]`` on). The system threshold is the
median of the 10-fold best thresholds on the enrolled templates against their probes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.world import IDS
from ..encoders.base import TorchEncoder
from ..encoders.embed import embed
from ..metrics import genuine_impostor_pairs, pair_distances, verification_accuracy
from ..models.defaults import load_default


class SyntheticWorld:
    """Attributes: ``models`` (:class:`~advface_fast.models.defaults.DefaultModels`), ``encoder``
    (E), ``x_enrol``/``x_probe`` ``(users, 3, 32, 32)`` and their templates ``z_enrol``/``z_probe``
    ``(users, D)``, the attacker's ``x_att``/``z_att``, the verification pairs ``pi``, ``pj``,
    ``same`` and E's ``threshold`` (squared L2 between unit templates)."""

    def __init__(self, users: int, attacker_ids: int, attacker_per_id: int, seed: int) -> None:
        m = load_default()
        self.models, self.encoder = m, TorchEncoder(m.encoder)
        ids = torch.arange(IDS["heldout"], IDS["heldout"] + users)
        self.x_enrol = m.world.render(ids, torch.zeros_like(ids))
        self.z_enrol = embed(self.encoder, self.x_enrol, flip=False)
        self.x_probe = m.world.render(ids, torch.ones_like(ids))
        self.z_probe = embed(self.encoder, self.x_probe, flip=False)
        self.x_att, _ = m.world.dataset(attacker_ids, attacker_per_id, id_offset=IDS["attacker"], var_offset=10)
        self.z_att = embed(self.encoder, self.x_att, flip=False)
        self.pi, self.pj, self.same = genuine_impostor_pairs(users, seed)
        _, _, thr = verification_accuracy(pair_distances(self.z_enrol[self.pi], self.z_probe[self.pj]), self.same)
        self.threshold = float(np.median(thr))

    def inference_and_rank1(
        self, encoder: TorchEncoder, probes: torch.Tensor, threshold: float, rec: torch.Tensor, idx: torch.Tensor
    ) -> tuple[float, float]:
        """How a recogniser judges reconstructions ``rec`` ``(n, 3, H, W)`` of the enrolled people
        ``idx`` ``(n,)``: ``(identity inference, rank-1)`` in %, i.e. the share of reconstructions
        that ``encoder`` accepts as the person against that person's probe template (``probes``
        ``(users, D)``, squared L2 below ``threshold``), and the share whose nearest probe among the
        ``n`` is the person's."""
        e = embed(encoder, rec, flip=False)
        inferred = pair_distances(e, probes[idx]) < threshold
        nearest = torch.cdist(e, probes[idx]).argmin(1)
        return 100 * float(inferred.mean()), 100 * float((nearest == torch.arange(len(e))).float().mean())
