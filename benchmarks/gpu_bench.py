"""GPU correctness check and benchmark of every backend, side by side in one run.

Standard configuration (issue #8): D = 512, decoder 512-1024-2048-3x64x64 (leaky_relu, tanh),
steps = 10, batch 8192, eps = 0.03, alpha = 0.005, random start. Variants timed on the same
inputs: torch eager fp32 (the reference as users run it), torch eager tf32 and bf16 (autocast),
torch.compile of the reference step (mode="reduce-overhead": Inductor + CUDA graphs) in fp32
and bf16, and the fused Triton engine in fp32 (IEEE), tf32 and bf16 (on Hopper and newer its bf16 GEMMs
run on the TMA kernel, kernels/mlp_gemm_tma.py; "triton-pointer bf16" is the same engine held to
the pointer kernel, side by side). Throughput is features per
second; TFLOP/s counts the loop's GEMMs from the layer sizes (advface_fast.engines.flops); the bf16 peak
is measured in the same run with an 8192^3 torch.matmul.

Run by benchmarks/gpu_check.sh. ``--smoke`` runs tiny sizes on the CPU under Triton's
interpreter, to check the script itself without a GPU.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines.advertorch_style import advertorch_style
from baselines.torchattacks_style import torchattacks_style

import advface_fast as af
from advface_fast.engines import resolve_backend
from advface_fast.engines.flops import mlp_pgd_flops_per_row_step
from advface_fast.engines.reference import l1_input_grad_ref, pgd_ref
from advface_fast.engines.torch_reference import torch_pgd

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int = 2, iters: int = 5) -> float:
    """Median wall time of ``fn`` in seconds after ``warmup`` calls (synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bf16_peak_tflops(device: torch.device, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    sec = timed(lambda: a @ b, device, warmup=3, iters=10)
    return 2 * n**3 / sec / 1e12


def frozen(decoder: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return decoder.to(device).eval().requires_grad_(False)


def inputs(batch: int, dim: int, decoder: torch.nn.Module, eps: float, seed: int, device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=1).to(device)
    z0 = z + eps * (2 * torch.rand(batch, dim, generator=g).to(device) - 1)
    with torch.no_grad():
        target = decoder(z)
    return z, z0, target


# ------------------------------------------------------------------------------------------- checks
def check_odd_sizes(device: torch.device, engines: tuple[str, ...] | None = None) -> list[dict]:
    """fp32 (IEEE) fused engines and mlp vs the torch reference on odd sizes, every activation pair,
    batch 1 and 33. ``engines`` (default: every fused engine and mlp) narrows the list: Triton's
    autotuning of these 12 shapes takes about two minutes on a fresh machine."""
    # odd sizes never take the TMA kernel (it needs multiples of 8): triton-pointer would repeat triton
    engines = engines or (*(e for e in fused_engines(device) if e != "triton-pointer"), "mlp")
    rows = []
    # every activation and every output activation once (all nine pairs run under the interpreter in CI)
    for act, out_act in (("relu", "tanh"), ("leaky_relu", "sigmoid"), ("gelu", "none")):
        torch.manual_seed(0)
        dec = af.MLPDecoder(37, [129, 64], (3, 7, 5), act=act, out_act=out_act)
        for batch in (1, 33):
            z = torch.nn.functional.normalize(torch.randn(batch, 37), dim=1).to(device)
            kw = {"eps": 0.05, "alpha": 0.01, "steps": 5, "start": "random", "progress": False, "device": device}
            a = af.protect(z, dec, backend="torch", **kw)
            for name in engines:
                check = f"odd sizes {name} {act}/{out_act} B={batch}"
                try:
                    diff = (a - protect_with(name, z, dec, **kw)).abs().max().item()
                except Exception as exc:  # reported (the cuda loop is new), not fatal to the other checks
                    rows.append({"check": check, "error": f"{type(exc).__name__}: {exc}"[:300], "ok": False})
                    continue
                rows.append({"check": check, "max_abs_diff": diff, "ok": diff < 1e-5})
    return rows


def check_one_step(decoder: torch.nn.Module, device: torch.device, batch: int, eps: float, alpha: float) -> list[dict]:
    """One step at the standard configuration against a float64 oracle. Counted: elements whose
    step differs from the oracle's (|z_1 - z_1^(64)| > alpha / 100) among those whose oracle |g|
    exceeds 1e-4 of the row's max. Such a difference can still come from rounding: an output
    element with |y - x~| below the precision's rounding takes either L1 sign and moves g by a
    finite amount (P = 12288 of them per row here). So each engine is held to plain PyTorch's
    rate at the same precision: at most 2x torch's, plus 5e-4."""
    z, z0, target = inputs(batch, decoder.in_dim, decoder, eps, 1, device)
    dec64 = copy.deepcopy(decoder).double()
    z64, z064, t64 = z.double(), z0.double(), target.double()
    ref = pgd_ref(dec64, z064, z64, t64, eps, alpha, 1)
    grad = l1_input_grad_ref(dec64, z064, t64)
    clear = grad.abs() > 1e-4 * grad.abs().amax(dim=1, keepdim=True)

    def differ(got: torch.Tensor) -> float:
        return ((got.double() - ref).abs() > alpha / 100)[clear].float().mean().item()

    rows = []
    for precision in ("fp32", "tf32", "bf16"):
        base = differ(torch_pgd(decoder, z0, z, target, eps, alpha, 1, precision))
        for name in fused_engines(device):
            check = f"one step {precision} {name}: fraction of clear-gradient steps that differ from fp64"
            try:
                got = differ(engine_run(name, decoder, device, z0, z, target, eps, alpha, 1, precision))
            except Exception as exc:  # reported, not fatal to the other checks
                rows.append({"check": check, "error": f"{type(exc).__name__}: {exc}"[:300], "ok": False})
                continue
            rows.append({"check": check, name: got, "torch_same_precision": base, "ok": got <= 2 * base + 5e-4})
    return rows


def fused_engines(device: torch.device) -> tuple[str, ...]:
    """The fused engines checked here: Triton (on Hopper and newer also held to its pointer GEMM
    kernel), and on GPUs the cuda backend's two loops."""
    if device.type != "cuda":
        return ("triton",)
    hopper = torch.cuda.get_device_capability(device)[0] >= 9
    return ("triton", *(("triton-pointer",) if hopper else ()), "cuda-compiled", "cuda-nvrtc")


def engine_run(name: str, decoder, device: torch.device, *args, **kwargs) -> torch.Tensor:
    """``pgd`` of the registered engine ``name`` (``advface-fast backends`` lists them)."""
    return resolve_backend(name, decoder, device).pgd(decoder, *args, **kwargs)


def protect_with(name: str, *args, **kwargs) -> torch.Tensor:
    """``af.protect`` through the registered engine ``name``."""
    return af.protect(*args, backend=name, **kwargs)


def check_graph_replay_and_ties(decoder: torch.nn.Module, device: torch.device) -> list[dict]:
    """Per fused engine: the first (eager) batch, the capture and the replays give the same bytes;
    with start="original" the engine reproduces its own shadow image, every L1 sign is 0, nothing moves."""
    z = torch.nn.functional.normalize(torch.randn(3000, decoder.in_dim, device=device), dim=1)
    kw = {"eps": 0.03, "alpha": 0.005, "steps": 4, "start": "random", "progress": False, "batch_size": 1000}
    rows = []
    for name in fused_engines(device):
        try:
            runs = [protect_with(name, z, decoder, precision="bf16", **kw) for _ in range(2)]
            kw_still = {"eps": 0.03, "alpha": 0.005, "steps": 3, "renorm": False, "progress": False}
            still = protect_with(name, z[:500], decoder, start="original", **kw_still)
        except Exception as exc:  # reported, not fatal to the other checks
            err = f"{type(exc).__name__}: {exc}"[:300]
            rows.append({"check": f"{name}: eager, captured and replayed batches", "error": err, "ok": False})
            continue
        rows += [
            {
                "check": f"{name}: eager, captured and replayed batches give identical results",
                "ok": bool(torch.equal(runs[0], runs[1])),
            },
            {
                "check": f"{name}: offline start=original: exact ties, nothing moves",
                "ok": bool(torch.equal(still, z[:500])),
                "max_abs_moved": (still - z[:500]).abs().max().item(),
            },
        ]
    return rows


# ------------------------------------------------------------------------------------------- bench
def compiled_step(decoder: torch.nn.Module, eps: float, alpha: float, precision: str):
    """The reference step under torch.compile (Inductor, CUDA graphs via reduce-overhead)."""

    def loss(z, target):
        return (decoder(z) - target).abs().sum()

    grad = torch.func.grad(loss)

    def step(z, centre, target):
        if precision == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                g = grad(z, target)
        else:
            g = grad(z, target)
        return torch.clamp(z + alpha * torch.sign(g), centre - eps, centre + eps)

    fn = torch.compile(step, mode="reduce-overhead")

    def loop(z0, centre, target, steps):
        z = z0
        for _ in range(steps):
            torch.compiler.cudagraph_mark_step_begin()
            z = fn(z, centre, target).clone()  # the graph's output buffer is reused by the next replay
        return z

    return loop


def selected(variants: dict[str, Callable], cfg: dict) -> dict[str, Callable]:
    """The variants named by ``--variants`` (all when none were named)."""
    only = cfg.get("variants")
    return {k: v for k, v in variants.items() if not only or k in only}


def bench_standard(cfg: dict, device: torch.device, peak: float, deadline: float) -> list[dict]:
    torch.manual_seed(0)
    dec = frozen(af.MLPDecoder(cfg["dim"], cfg["hidden"], cfg["image"]), device)
    widths = [cfg["dim"], *cfg["hidden"], int(np.prod(cfg["image"]))]
    flops = mlp_pgd_flops_per_row_step(widths) * cfg["steps"] * cfg["batch"]
    z, z0, target = inputs(cfg["batch"], cfg["dim"], dec, cfg["eps"], 2, device)
    e, a, s = cfg["eps"], cfg["alpha"], cfg["steps"]
    mlp = resolve_backend("mlp-eager", dec, device)

    def engine(name: str, precision: str = "fp32"):  # resolved when timed: an unavailable one fails its rows only
        return resolve_backend(name, dec, device, precision)  # a family resolves per precision (triton: tma in bf16)

    user_dec = copy.deepcopy(dec).requires_grad_(True)
    noise = (z0 - z) / e
    variants: dict[str, Callable[[], torch.Tensor]] = {
        "torch eager fp32": lambda: torch_pgd(dec, z0, z, target, e, a, s, "fp32"),
        "torch eager tf32": lambda: torch_pgd(dec, z0, z, target, e, a, s, "tf32"),
        "torch eager bf16": lambda: torch_pgd(dec, z0, z, target, e, a, s, "bf16"),
        "triton fp32": lambda: engine("triton", "fp32").pgd(dec, z0, z, target, e, a, s, precision="fp32"),
        "triton tf32": lambda: engine("triton", "tf32").pgd(dec, z0, z, target, e, a, s, precision="tf32"),
        "triton bf16": lambda: engine("triton", "bf16").pgd(dec, z0, z, target, e, a, s, precision="bf16"),
        "triton-pointer bf16": lambda: engine("triton-pointer").pgd(dec, z0, z, target, e, a, s, precision="bf16"),
        "cuda fp32": lambda: engine("cuda-compiled").pgd(dec, z0, z, target, e, a, s, precision="fp32"),
        "cuda tf32": lambda: engine("cuda-compiled").pgd(dec, z0, z, target, e, a, s, precision="tf32"),
        "cuda bf16": lambda: engine("cuda-compiled").pgd(dec, z0, z, target, e, a, s, precision="bf16"),
        # the cuda backend's fallback for installs without nvcc: NVRTC kernels, torch GEMMs, Python loop
        "cuda-nvrtc fp32": lambda: engine("cuda-nvrtc").pgd(dec, z0, z, target, e, a, s, "fp32"),
        "cuda-nvrtc bf16": lambda: engine("cuda-nvrtc").pgd(dec, z0, z, target, e, a, s, "bf16"),
        "mlp fp32": lambda: mlp.pgd(dec, z0, z, target, e, a, s, precision="fp32"),
        "mlp bf16": lambda: mlp.pgd(dec, z0, z, target, e, a, s, precision="bf16"),
        # what users write by hand (benchmarks/baselines), on a decoder whose weights require grad
        "torchattacks-style fp32": lambda: torchattacks_style(user_dec, z, e, a, s, noise),
        "advertorch-style fp32": lambda: advertorch_style(user_dec, z, e, a, s, noise),
    }
    if device.type == "cuda":
        for prec in ("fp32", "bf16"):
            loop = compiled_step(dec, e, a, prec)
            variants[f"torch.compile {prec}"] = lambda loop=loop: loop(z0, z, target, s)
    rows = []
    for name, fn in selected(variants, cfg).items():
        if time.monotonic() > deadline:
            rows.append({"variant": name, "error": "skipped: time budget spent"})
            continue
        try:
            t_first = time.perf_counter()
            fn()
            sync(device)
            first = time.perf_counter() - t_first
            sec = timed(fn, device, warmup=1, iters=5)
            rows.append(
                {
                    "variant": name,
                    "batch": cfg["batch"],
                    "seconds_per_batch": sec,
                    "features_per_s": cfg["batch"] / sec,
                    "tflops": flops / sec / 1e12,
                    "fraction_of_bf16_peak": flops / sec / 1e12 / peak,
                    "first_call_s": first,
                }
            )
            log(f"{name:22s} {cfg['batch'] / sec:12.0f} features/s  {flops / sec / 1e12:7.1f} TFLOP/s")
        except Exception as exc:  # a baseline that fails here is reported, not fatal
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            log(f"{name}: FAILED {type(exc).__name__}: {exc}")
            traceback.print_exc()
    base = {r["variant"]: r.get("features_per_s") for r in rows}
    for r in rows:
        if r.get("features_per_s") and base.get("torch eager fp32"):
            r["speedup_vs_torch_eager_fp32"] = r["features_per_s"] / base["torch eager fp32"]
    return rows


FP32_SWEEP_MAX = 32768


def bench_batches(cfg: dict, device: torch.device, deadline: float) -> list[dict]:
    """Triton and cuda bf16 vs torch eager bf16 across batch sizes, from 1 (CUDA graphs matter at
    small ones) to the largest that fits: a variant that runs out of memory is recorded as such
    and not tried at larger batches; the sweep ends when none is left or the budget is spent. The
    fp32 variants (torch eager as users run it, cuda, the hand-written baselines) run up to
    FP32_SWEEP_MAX rows: ~40k features/s, so one timed batch of 131,072 would take 3 s, x8 calls."""
    torch.manual_seed(0)
    dec = frozen(af.MLPDecoder(cfg["dim"], cfg["hidden"], cfg["image"]), device)
    user_dec = copy.deepcopy(dec).requires_grad_(True)  # the baselines' decoder, weights requiring grad
    rows = []

    def engine(name: str):  # resolved when timed (bf16: this sweep's precision); an unavailable one fails its rows
        return resolve_backend(name, dec, device, "bf16")

    out_of_memory: set[str] = set()
    for batch in cfg["batch_sweep"]:
        if time.monotonic() > deadline:
            break
        try:
            z, z0, target = inputs(batch, cfg["dim"], dec, cfg["eps"], 3, device)
        except torch.cuda.OutOfMemoryError:
            log(f"batch {batch}: the inputs alone do not fit")
            break
        args = (dec, z0, z, target, cfg["eps"], cfg["alpha"], cfg["steps"])
        fns = {
            "torch eager bf16": lambda args=args: torch_pgd(*args, "bf16"),
            "triton bf16": lambda args=args: engine("triton").pgd(*args, precision="bf16"),
            "triton-pointer bf16": lambda args=args: engine("triton-pointer").pgd(*args, precision="bf16"),
            "cuda bf16": lambda args=args: engine("cuda-compiled").pgd(*args, precision="bf16"),
            "cuda-nvrtc bf16": lambda args=args: engine("cuda-nvrtc").pgd(*args, precision="bf16"),
        }
        if batch <= FP32_SWEEP_MAX:
            # the baselines' arguments: (z, eps, alpha, steps, noise) from the same start
            base = (z, cfg["eps"], cfg["alpha"], cfg["steps"], (z0 - z) / cfg["eps"])
            fns |= {
                "torch eager fp32": lambda args=args: torch_pgd(*args, "fp32"),
                "cuda fp32": lambda args=args: resolve_backend("cuda-compiled", dec, device).pgd(
                    *args, precision="fp32"
                ),
                "torchattacks-style fp32": lambda base=base: torchattacks_style(user_dec, *base),
                "advertorch-style fp32": lambda base=base: advertorch_style(user_dec, *base),
            }
        line = []
        fns = selected(fns, cfg)
        for name, fn in fns.items():
            if name in out_of_memory:
                continue
            try:
                sec = timed(fn, device, warmup=3, iters=5)
            except torch.cuda.OutOfMemoryError:
                out_of_memory.add(name)
                torch.cuda.empty_cache()
                rows.append({"variant": name, "batch": batch, "error": "out of memory"})
                line.append(f"{name} OUT OF MEMORY")
                continue
            except Exception as exc:  # the cuda loop is new: its failure must not hide the others
                rows.append({"variant": name, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:300]})
                line.append(f"{name} FAILED")
                continue
            rows.append({"variant": name, "batch": batch, "features_per_s": batch / sec})
            line.append(f"{name} {batch / sec:10.0f}/s")
        log(f"batch {batch:6d}: " + "  ".join(line))
        del z, z0, target
        if len(out_of_memory) == len(fns):
            break
    return rows


def bench_million(cfg: dict, device: torch.device) -> list[dict]:
    """protect() end to end on a 1M x 512 gallery (auto backend, bf16): already on the GPU, and
    in host memory (numpy: staged through pinned buffers, copies and writes overlapping compute).
    Reports the process's peak host memory and the GPU's peak memory of each run."""
    import resource

    torch.manual_seed(0)
    dec = af.MLPDecoder(cfg["dim"], cfg["hidden"], cfg["image"])
    n = cfg["million"]
    gallery = torch.nn.functional.normalize(torch.randn(n, cfg["dim"], device=device), dim=1)
    host = gallery.cpu().numpy()
    rows = []
    bs = 16384
    kw = {"eps": cfg["eps"], "alpha": cfg["alpha"], "steps": cfg["steps"], "start": "random", "progress": False}
    runs = [("auto", "device tensor", gallery), ("auto", "host numpy (pinned staging)", host)]
    if device.type == "cuda":
        runs.append(("cuda", "device tensor", gallery))
    protectors = {}
    for backend, where, data in runs:
        if backend not in protectors:
            protectors[backend] = af.Protector(
                dec, precision="bf16", batch_size=bs, device=device, backend=backend, **kw
            )
            protectors[backend](gallery[: 2 * bs])  # compile, autotune, capture outside the timing
        prot = protectors[backend]
        sync(device)
        torch.cuda.reset_peak_memory_stats(device) if device.type == "cuda" else None
        t = time.perf_counter()
        out = prot(data)
        sync(device)
        sec = time.perf_counter() - t
        rows.append(
            {
                "variant": f"protect() {n} rows, {where}, {backend} backend, bf16",
                "seconds": sec,
                "rows_per_s": n / sec,
                "finite": bool(np.isfinite(np.asarray(out if isinstance(out, np.ndarray) else out.cpu())).all()),
                "peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_device_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            }
        )
        log(f"million rows, {where}, {backend}: {sec:.2f} s ({n / sec:.0f} rows/s)")
    return rows


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "advface_fast": af.__version__}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            env["driver"] = None
    try:
        env["commit"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.TimeoutExpired):
        env["commit"] = None
    # the device machines get a copy of the working tree whose .git may be older than the tree
    env["commit"] = os.environ.get("ADVFACE_COMMIT") or env["commit"]
    from advface_fast.engines import extension

    env["extension"] = extension.build_info()
    env["triton_gemm"] = triton_gemm_state(device)
    return env


def triton_gemm_state(device: torch.device) -> dict:
    """Which GEMM kernel the Triton engine's bf16 GEMMs take here, and whether the TMA kernel failed."""
    try:
        from advface_fast.kernels import mlp_gemm_tma
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    x = torch.zeros(128, 128, dtype=torch.bfloat16, device=device)
    return {
        "mode": mlp_gemm_tma.mode(),
        "bf16_takes_tma": mlp_gemm_tma.eligible(x, x, x, [], "bf16"),
        "tma_failure": mlp_gemm_tma.failure(),
    }


def write_outputs(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / "gpu_bench.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "section",
                "variant",
                "batch",
                "features_per_s",
                "tflops",
                "fraction_of_bf16_peak",
                "speedup_vs_torch_eager_fp32",
                "error",
            ]
        )
        for section in ("standard", "batches"):
            for r in result.get(section, []):
                w.writerow(
                    [
                        section,
                        r.get("variant"),
                        r.get("batch"),
                        r.get("features_per_s"),
                        r.get("tflops"),
                        r.get("fraction_of_bf16_peak"),
                        r.get("speedup_vs_torch_eager_fp32"),
                        r.get("error"),
                    ]
                )
    lines = [
        f"# GPU benchmark: {result['env'].get('gpu', 'cpu')}",
        "",
        "```",
        json.dumps(result["env"]),
        "```",
        "",
        f"Measured bf16 matmul peak: {result['bf16_peak_tflops']:.0f} TFLOP/s",
    ]
    if result.get("standard"):
        lines += [
            "",
            "| variant | features/s | TFLOP/s | of bf16 peak | vs torch eager fp32 |",
            "|---|---|---|---|---|",
        ]
    for r in result.get("standard", []):
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error'][:80]} | | | |")
        else:
            lines.append(
                f"| {r['variant']} | {r['features_per_s']:.0f} | {r['tflops']:.1f} | "
                f"{100 * r['fraction_of_bf16_peak']:.1f}% | {r.get('speedup_vs_torch_eager_fp32', 0):.2f}x |"
            )
    if result.get("million"):
        lines += [
            "",
            "| million-row run | seconds | rows/s | peak host RSS MB | peak device MB |",
            "|---|---|---|---|---|",
        ]
        for r in result["million"]:
            if "error" in r:
                lines.append(f"| error: {r['error'][:100]} | | | | |")
            else:
                dev_mb = f"{r['peak_device_mb']:.0f}" if r.get("peak_device_mb") is not None else ""
                lines.append(
                    f"| {r['variant']} | {r['seconds']:.2f} | {r['rows_per_s']:.0f} | "
                    f"{r['peak_host_rss_mb']:.0f} | {dev_mb} |"
                )
    if result.get("batches"):
        names = list(dict.fromkeys(r["variant"] for r in result["batches"]))
        by = {(r["variant"], r["batch"]): r for r in result["batches"]}
        lines += [
            "",
            f"Batch sweep (features/s; fp32 up to {FP32_SWEEP_MAX} rows)",
            "",
            "| batch | " + " | ".join(names) + " |",
        ]
        lines.append("|---" * (len(names) + 1) + "|")
        for batch in sorted({r["batch"] for r in result["batches"]}):
            cells = []
            for name in names:
                r = by.get((name, batch))
                cells.append("" if r is None else r.get("error", "")[:30] or f"{r['features_per_s']:.0f}")
            lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    if result.get("checks"):
        lines += ["", "| check | ok | numbers |", "|---|---|---|"]
    for c in result.get("checks", []):
        nums = {k: v for k, v in c.items() if k not in ("check", "ok")}
        lines.append(f"| {c['check']} | {c.get('ok')} | {json.dumps(nums)} |")
    (out / "gpu_bench.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/gpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU under the Triton interpreter")
    p.add_argument(
        "--budget", type=float, default=420.0, help="seconds after which the remaining benchmarks are skipped"
    )
    p.add_argument(
        "--odd-engines",
        default="",
        help="comma-separated engines for the odd-size checks (default: triton,cuda-compiled,cuda-nvrtc,mlp on GPUs)",
    )
    p.add_argument(
        "--sections",
        default="checks,standard,million,batches",
        help="comma-separated parts to run: checks, standard, million, batches (default: all)",
    )
    p.add_argument("--batch-sweep", default="", help="comma-separated batch sizes for the sweep (default: 1 .. 262144)")
    p.add_argument(
        "--variants",
        default="",
        help='comma-separated variants to time in the standard and batch sections, e.g. "triton bf16,triton-pointer '
        'bf16,torch.compile bf16,cuda bf16" (default: all)',
    )
    args = p.parse_args()
    sections = set(args.sections.split(","))
    if not sections <= {"checks", "standard", "million", "batches"}:
        p.error(f"unknown section(s) in --sections: {', '.join(sorted(sections))}")
    deadline = T0 + args.budget
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
        device = torch.device("cpu")
        cfg = {
            "dim": 32,
            "hidden": [48, 64],
            "image": (3, 8, 8),
            "steps": 3,
            "batch": 64,
            "eps": 0.03,
            "alpha": 0.005,
            "batch_sweep": [1, 16],
            "million": 0,
        }
    else:
        if not torch.cuda.is_available():
            print("no CUDA GPU: run with --smoke to check the script on the CPU", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        cfg = {
            "dim": 512,
            "hidden": [1024, 2048],
            "image": (3, 64, 64),
            "steps": 10,
            "batch": 8192,
            "eps": 0.03,
            "alpha": 0.005,
            "batch_sweep": [1, 64, 1024, 8192, 32768, 131072, 262144],
            "million": 1_000_000,
        }
    if args.batch_sweep:
        cfg["batch_sweep"] = [int(b) for b in args.batch_sweep.split(",")]
    if args.variants:
        cfg["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    result: dict = {
        "env": environment(device),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
    }
    log(f"environment: {result['env']}")
    result["bf16_peak_tflops"] = bf16_peak_tflops(device, 8192 if device.type == "cuda" else 256)
    log(f"bf16 matmul peak: {result['bf16_peak_tflops']:.1f} TFLOP/s")
    checks = []
    if "checks" in sections:
        checks += check_odd_sizes(device, tuple(e for e in args.odd_engines.split(",") if e) or None)
        std_dec = frozen(af.MLPDecoder(cfg["dim"], cfg["hidden"], cfg["image"]), device)
        checks += check_one_step(std_dec, device, min(cfg["batch"], 2048), cfg["eps"], cfg["alpha"])
        checks += check_graph_replay_and_ties(std_dec, device)
    result["checks"] = checks
    for c in checks:
        log(
            f"check {'OK  ' if c.get('ok') else 'FAIL'} {c['check']}: "
            f"{ {k: v for k, v in c.items() if k not in ('check', 'ok')} }"
        )
    write_outputs(Path(args.out), result)
    if "standard" in sections:
        result["standard"] = bench_standard(cfg, device, result["bf16_peak_tflops"], deadline)
        write_outputs(Path(args.out), result)
    # the million-row runs (a target of their own) before the open-ended batch sweep
    if "million" in sections and cfg["million"] and time.monotonic() < deadline:
        try:
            result["million"] = bench_million(cfg, device)
        except Exception as exc:
            result["million"] = [{"error": f"{type(exc).__name__}: {exc}"}]
            traceback.print_exc()
    write_outputs(Path(args.out), result)
    if "batches" in sections:
        result["batches"] = bench_batches(cfg, device, deadline)
    result["env"]["triton_gemm"] = triton_gemm_state(device)  # again: a compile failure shows only once run
    write_outputs(Path(args.out), result)
    log(f"wrote {args.out}/gpu_bench.json, .csv, .md")
    return 0 if all(c.get("ok") for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
