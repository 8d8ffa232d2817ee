"""Evaluation harness: recognition utility, reconstruction attacks, baselines, sweeps, reports."""

from .attackers import ATTACKERS, ResUpDecoder, make_attacker
from .baselines import gaussian_same_l2, laplace_dp, uniform_linf
from .evaluate import EvalConfig, run_evaluation

__all__ = [
    "ATTACKERS",
    "EvalConfig",
    "ResUpDecoder",
    "gaussian_same_l2",
    "laplace_dp",
    "make_attacker",
    "run_evaluation",
    "uniform_linf",
]
