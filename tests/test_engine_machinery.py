"""The machinery the engines share: the registry's name resolution, the plan cache, the CUDA-graph
runner's rules (with a stand-in graph, so the rules are checked on a CPU), the run settings."""

from __future__ import annotations

import gc
from typing import ClassVar

import pytest
import torch
from helpers import odd_pair

import advface_fast as af
from advface_fast.engines import cuda_graphs, registry
from advface_fast.engines.cuda_graphs import GraphRunner
from advface_fast.engines.plan_cache import PlanCache
from advface_fast.engines.registry import Engine, resolve_backend, supports
from advface_fast.settings import RunSettings

CPU = torch.device("cpu")


# --- registry ------------------------------------------------------------------------------------


def test_the_old_name_resolves_to_the_eager_engine():
    dec, _ = odd_pair()
    assert resolve_backend("mlp", dec, CPU).name == resolve_backend("mlp-eager", dec, CPU).name == "mlp-eager"


def test_the_triton_family_picks_its_variant(monkeypatch):
    from advface_fast.kernels import mlp_gemm_tma

    dec, _ = odd_pair()
    assert resolve_backend("triton", dec, CPU, "bf16").name == "triton-pointer"  # the interpreter: auto is pointer
    with mlp_gemm_tma.forced("tma"):
        assert resolve_backend("triton", dec, CPU, "bf16").name == "triton-tma"
        with pytest.raises(af.BackendUnavailableError, match="bf16"):  # forced tma, fp32: nothing to run it
            resolve_backend("triton", dec, CPU, "fp32")
    monkeypatch.setenv("ADVFACE_TRITON_GEMM", "tma")
    assert resolve_backend("triton", dec, CPU, "bf16").name == "triton-tma"


def test_a_family_that_cannot_run_names_each_variants_reason(monkeypatch):
    dec, _ = odd_pair()
    reasons = {"cuda-compiled": "no nvcc build", "cuda-nvrtc": "no CuPy"}
    for name, why in reasons.items():
        real = registry.ENGINES[name]
        refusing = Engine(name, real.description, real.pgd, real.decode, checks=(lambda d, v, p, why=why: why,))
        monkeypatch.setitem(registry.ENGINES, name, refusing)
    _, reason = supports("cuda", dec, CPU, "fp32")
    assert reason == "cuda-compiled: no nvcc build; cuda-nvrtc: no CuPy"
    monkeypatch.setenv("ADVFACE_CUDA_LOOP", "nvrtc")  # the override leaves one variant
    assert supports("cuda", dec, CPU, "fp32")[1] == "no CuPy"


def test_names_are_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.ENGINES["torch"])
    with pytest.raises(ValueError, match="is not one of"):
        resolve_backend("fastest", odd_pair()[0], CPU)


def test_auto_order_names_registered_entries():
    for order in registry.AUTO_ORDER.values():
        assert order[-1] == "torch"
        assert all(n in registry.ENGINES or n in registry.FAMILIES for n in order)


# --- plan cache ----------------------------------------------------------------------------------


def test_plan_cache_rebuilds_on_a_parameter_change_and_bounds_its_slots():
    cache: PlanCache[object] = PlanCache(per_decoder=2)
    dec, _ = odd_pair()
    built = []

    def build(tag):
        built.append(tag)
        return object()

    a = cache.get(dec, ("a",), lambda: build("a"))
    assert cache.get(dec, ("a",), lambda: build("a")) is a and built == ["a"]
    with torch.no_grad():
        dec.layers[0].weight.add_(1.0)  # in place: a new version
    assert cache.get(dec, ("a",), lambda: build("a")) is not a and built == ["a", "a"]
    dec.layers[0].bias = torch.nn.Parameter(dec.layers[0].bias.detach().clone())  # replaced: a new identity
    cache.get(dec, ("a",), lambda: build("a"))
    assert built == ["a", "a", "a"]
    cache.get(dec, ("b",), lambda: build("b"))
    cache.get(dec, ("c",), lambda: build("c"))  # a third slot drops the least recently used ("a")
    assert list(cache.plans(dec)) == [("b",), ("c",)]


def test_plan_cache_lets_the_decoder_go():
    cache: PlanCache[object] = PlanCache()
    dec, _ = odd_pair()
    cache.get(dec, ("a",), object)
    del dec
    gc.collect()
    assert len(cache._plans) == 0


# --- graph runner --------------------------------------------------------------------------------


class _FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: a capture records the body, a replay runs it."""

    def __init__(self) -> None:
        self.body = None

    def replay(self) -> None:
        self.body()


class _Capturing:
    """Stands in for torch.cuda.graph: records the calls made inside instead of running them."""

    active: ClassVar[list] = []

    def __init__(self, graph, stream=None) -> None:
        self.graph = graph

    def __enter__(self):
        _Capturing.active.append(self.graph)

    def __exit__(self, *exc):
        _Capturing.active.pop()


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(cuda_graphs.torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(cuda_graphs.torch.cuda, "graph", _Capturing)
    monkeypatch.setattr(cuda_graphs.torch.cuda, "Stream", lambda device: None)


def _body(log):
    def body():
        if _Capturing.active:
            _Capturing.active[-1].body = lambda: log.append("replay")
        else:
            log.append("eager")

    return body


def test_graph_rules_eager_then_capture_then_replay(fake_cuda):
    runner, log = GraphRunner(CPU, enabled=True, label="test loop"), []
    runner.run(("k", 1), _body(log))
    assert log == ["eager"] and not runner.captured
    runner.run(("k", 1), _body(log))  # second call with the key: captured, then replayed
    runner.run(("k", 1), _body(log))
    assert log == ["eager", "replay", "replay"] and runner.captured
    runner.run(("k", 2), _body(log))  # a new key starts again with an eager call
    runner.run(("k", 2), _body(log))
    assert log == ["eager", "replay", "replay", "eager", "replay"]
    runner.reset()  # new buffers: the graph is gone
    runner.run(("k", 2), _body(log))
    assert log[-1] == "eager"


def test_a_failed_capture_warns_once_and_stays_eager(monkeypatch):
    attempts = []

    def refuse():
        attempts.append(1)
        raise RuntimeError("capture refused")

    monkeypatch.setattr(cuda_graphs.torch.cuda, "CUDAGraph", refuse)
    runner, log = GraphRunner(CPU, enabled=True, label="test loop"), []
    runner.run(1, _body(log))
    with pytest.warns(RuntimeWarning, match="test loop runs eagerly"):
        runner.run(1, _body(log))
    runner.run(1, _body(log))
    assert log == ["eager"] * 3 and "capture refused" in runner.graph_error
    runner.reset()
    runner.run(1, _body(log))
    runner.run(1, _body(log))
    assert runner.graph_error is not None and len(attempts) == 1  # never retried, not after new buffers either


def test_a_disabled_runner_never_captures(fake_cuda):
    runner, log = GraphRunner(CPU, enabled=False, label="test loop"), []
    for _ in range(3):
        runner.run(1, _body(log))
    assert log == ["eager"] * 3 and not runner.captured


# --- run settings --------------------------------------------------------------------------------


def test_run_settings_are_one_definition():
    s = RunSettings(steps=3, start="original")
    assert RunSettings.of(s, steps=4).steps == 4 and RunSettings.of(s) is s
    with pytest.raises(TypeError, match=r"unknown protection setting.*'step'.*the settings are eps"):
        RunSettings.of(step=3)
    with pytest.raises(ValueError, match="precision="):
        RunSettings(precision="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        RunSettings(batch_size=0)
    with pytest.raises(ValueError, match="rotate=True needs key"):
        RunSettings(rotate=True)
    dec, _ = odd_pair()
    z = torch.randn(4, dec.in_dim)
    by_object = af.protect(z, dec, settings=s, progress=False)
    assert torch.equal(by_object, af.protect(z, dec, steps=3, start="original", progress=False))
    with pytest.raises(TypeError, match="unknown protection setting"):
        af.Protector(dec, stepz=3)


def test_the_distributed_run_takes_the_same_settings(tmp_path):
    from advface_fast.distributed import protect_distributed

    (tmp_path / "in").mkdir()
    dec, _ = odd_pair()
    with pytest.raises(TypeError, match="unknown protection setting"):
        protect_distributed(tmp_path / "in", tmp_path / "out", dec, stepz=3)
    with pytest.raises(ValueError, match="gpus_per_worker, not device="):
        protect_distributed(tmp_path / "in", tmp_path / "out", dec, device="cpu")
    assert not (tmp_path / "out").exists()  # refused before anything was written
