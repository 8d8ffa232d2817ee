"""Record multiplicity: pool the estimates of one person's several records.

Threat model: an insider holds the stolen database, where each record carries its person's label
(1:1 verification against a claimed identity needs it), and has an estimate of each record's clean
template from some other attack (known pairs, a public photo set: :mod:`.known_pairs_prior`). A
person enrolled with several templates has several records. Under one system-wide key they share
one rotation, so their estimates share its error and pooling adds little. Under shard keys they
fall in different shards, each estimated from its own shard's pairs: independent partial
exposures of one face, which pooling combines. Per-identity keys put them under one key of their
own, which no other person's pair informs.

The pooled estimate of a person with records ``R`` is

    mu + sum_{i in R} (e_i - mu)    ("evidence")     or     mean_{i in R} e_i    ("mean")

for unit estimates ``e_i`` and the attacker's unit prior mean ``mu`` (the direction of the mean
of its own clean templates: what an estimate with no information returns, so it adds nothing).
"evidence" adds each estimate's departure from the prior, as independent Gaussian observations
of one face add their information; "mean" averages, which suits estimates that are each nearly
exact. Every record of the person then gets the pooled estimate; a person with one record keeps
its own.
"""

from __future__ import annotations

import numpy as np
import torch

POOLINGS = ("mean", "evidence")


def pool_by_person(
    estimates: torch.Tensor, person: np.ndarray, prior_mean: torch.Tensor, how: str = "evidence"
) -> torch.Tensor:
    """Estimates ``(V, D)`` with each person's rows replaced by their pooled estimate (see the
    module docstring). ``estimates``: ``(V, D)`` float, any norm (unit-normalised first);
    ``person``: ``(V,)`` labels; ``prior_mean``: ``(D,)``, any norm (its direction is used); ``how``: one of
    :data:`POOLINGS`. Returns float64 rows (not unit-normalised)."""
    if how not in POOLINGS:
        raise ValueError(f"how must be one of {POOLINGS}, got {how!r}")
    person = np.asarray(person)
    if estimates.dim() != 2 or person.shape != (len(estimates),):
        raise ValueError(f"need estimates (V, D) and person (V,), got {tuple(estimates.shape)} and {person.shape}")
    if prior_mean.shape != (estimates.shape[1],):
        raise ValueError(f"prior_mean must be ({estimates.shape[1]},), got {tuple(prior_mean.shape)}")
    e = torch.nn.functional.normalize(estimates.double(), dim=1)
    mu = torch.nn.functional.normalize(prior_mean.double(), dim=0)
    _, inverse, counts = np.unique(person, return_inverse=True, return_counts=True)
    index = torch.from_numpy(inverse.astype(np.int64))
    sums = torch.zeros(len(counts), e.shape[1], dtype=torch.float64).index_add_(0, index, e - mu)
    if how == "mean":
        sums /= torch.from_numpy(counts).double()[:, None]
    return mu + sums[index]
