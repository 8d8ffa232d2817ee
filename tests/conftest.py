"""Shared fixtures. Triton's interpreter must be enabled before any @triton.jit decorator runs."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import torch
from helpers import make_pair, unit_rows

torch.set_num_threads(2)


@pytest.fixture
def pair():
    return make_pair()


@pytest.fixture
def gallery() -> np.ndarray:
    return unit_rows(50, 24, seed=123)
