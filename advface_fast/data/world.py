"""The synthetic-face world of the shipped default models: its rendering settings and which
identity ranges each party uses (the encoder and the defender train on ``train``, the encoder
validates on ``encoder_val``, the non-adaptive attacker trains on ``attacker``, evaluations enrol
``heldout``; the ranges never overlap).
"""

from __future__ import annotations

WORLD = {"size": 32, "seed": 0, "dim": 128}
IDS = {"train": 0, "encoder_val": 100_000, "attacker": 200_000, "heldout": 300_000}
