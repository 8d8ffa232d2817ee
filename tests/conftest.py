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


# Tests that start a server through one of these fixtures are marked ``server`` (Ray, Ray Serve,
# PostgreSQL): the marker follows the fixture, so a new test that uses one cannot be left unmarked.
SERVER_FIXTURES = {"local_ray", "cluster", "service", "server", "dsn"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)
