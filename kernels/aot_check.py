"""Compile the TMA GEMM kernel (``mlp_gemm_tma``) ahead of time for an NVIDIA architecture, without
a GPU, and report what each autotuning config costs there.

Triton compiles for any target on any machine (its wheel ships ``ptxas``), so a CPU-only machine
can tell whether every config and epilogue of the kernel compiles with the installed Triton, how
much shared memory each needs against the architecture's limit (a config over it is skipped by the
autotuner on the GPU: a wasted compile), its registers and spills (``ptxas -v``), and whether the
main loop became what it was written for: TMA copies (``async_tma_copy``) feeding asynchronous
warpgroup MMAs (``warp_group_dot``). GPU time is scarce; this catches a kernel that would not build
before a GPU session is spent on it.

    TRITON_INTERPRET=0 python -m advface_fast.kernels.aot_check            # every config x epilogue, sm_90
    TRITON_INTERPRET=0 python -m advface_fast.kernels.aot_check --quick    # two configs (CI runs this)
    python -m advface_fast.kernels.aot_check --json report.json

Exit status 1 when an epilogue has no config that compiles and fits, or any compile fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# Triton decides interpreted or compiled when a kernel is decorated, i.e. at the import below.
os.environ["TRITON_INTERPRET"] = "0"

import triton

from . import mlp_gemm_tma as T
from ._common import ACTS, OUT_ACTS

# Shared memory a block may use (opt-in maximum) per compute capability major.minor, bytes.
SMEM_LIMIT = {90: 232448, 100: 232448, 120: 101376}

# The bf16 loop's launches of the standard decoder (leaky_relu, tanh) and the gelu variant:
# (name, epilogue constants, dtypes of out / aux / aux2 / pre, B read K-major i.e. x @ W^T).
VARIANTS = [
    ("forward hidden, leaky_relu", {"EPI": 0, "ACT": "leaky_relu"}, ("bf16", None, None, None), True),
    ("forward hidden, gelu+pre", {"EPI": 0, "ACT": "gelu", "SAVE_PRE": True}, ("bf16", None, None, "bf16"), True),
    ("last layer, bf16 target", {"EPI": 1, "OUT_ACT": "tanh"}, ("bf16", "bf16", None, None), True),
    ("last layer, fp32 target", {"EPI": 1, "OUT_ACT": "tanh"}, ("bf16", "fp32", None, None), True),
    ("backward, leaky_relu", {"EPI": 2, "ACT": "leaky_relu"}, ("bf16", "bf16", None, None), False),
    ("sign step", {"EPI": 3, "HAS_BIAS": False}, ("fp32", "fp32", "fp32", None), False),
    ("decode", {"EPI": 4, "OUT_ACT": "tanh"}, ("fp32", None, None, None), True),
]  # fmt: skip


def _compile(config: triton.Config, variant: tuple, arch: int) -> dict:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    name, epi, (out_t, aux_t, aux2_t, pre_t), kmajor = variant
    kw = config.kwargs
    bm, bn, bk, sub = kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], kw["BLOCK_N"] // kw["EPI_SPLIT"]

    def desc(dtype: str | None, shape: tuple[int, int]) -> str:
        return f"tensordesc<{dtype or out_t}[{shape[0]}, {shape[1]}]>"  # unused ones alias `out`, as at run time

    sig = {
        "a_desc": desc("bf16", (bm, bk)),
        "b_desc": desc("bf16", (bn, bk) if kmajor else (bk, bn)),
        "out_desc": desc(out_t, (bm, sub)),
        "bias_ptr": "*fp32",
        "aux_desc": desc(aux_t, (bm, sub)),
        "aux2_desc": desc(aux2_t, (bm, sub)),
        "pre_desc": desc(pre_t, (bm, sub)),
        **dict.fromkeys(("M", "N", "K"), "i32"),
        **dict.fromkeys(("slope", "eps", "alpha"), "fp32"),
    }
    consts = {
        "EPI": epi["EPI"], "ACT": ACTS[epi.get("ACT", "relu")], "OUT_ACT": OUT_ACTS[epi.get("OUT_ACT", "none")],
        "HAS_BIAS": epi.get("HAS_BIAS", True), "SAVE_PRE": epi.get("SAVE_PRE", False), "B_KMAJOR": kmajor,
        "OUT_BF16": out_t == "bf16", "PRE_BF16": pre_t == "bf16", "INTERPRET": False, **kw,
        "EPI_BYTES": sum({"bf16": 2, "fp32": 4}[t] for t in (out_t, aux_t, aux2_t, pre_t) if t),
    }  # fmt: skip
    fn = T._mlp_gemm_tma_kernel.fn
    sig |= dict.fromkeys(consts, "constexpr")
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    row = {"variant": name, "config": {**kw, "num_warps": config.num_warps, "num_stages": config.num_stages}}
    t0 = time.perf_counter()
    try:
        cc = triton.compile(
            src,
            target=GPUTarget("cuda", arch, 32),
            options={"num_warps": config.num_warps, "num_stages": config.num_stages},
        )
    except Exception as exc:
        return row | {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
    ttgir = cc.asm["ttgir"]
    row |= {
        "ok": True,
        "compile_s": round(time.perf_counter() - t0, 2),
        "shared_bytes": cc.metadata.shared,
        "fits": cc.metadata.shared <= SMEM_LIMIT.get(arch, SMEM_LIMIT[90]),
        "tma_loads": len(re.findall(r"ttng\.async_tma_copy_global_to_local", ttgir)),
        "tma_stores": len(re.findall(r"ttng\.async_tma_copy_local_to_global", ttgir)),
        "wgmma": len(re.findall(r"ttng\.warp_group_dot\b", ttgir)),
    }
    return row | _ptxas_usage(cc.asm["ptx"], arch)


def _ptxas_usage(ptx: str, arch: int) -> dict:
    """Registers and spill bytes from ``ptxas -v`` (the ptxas Triton ships)."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    suffix = "a" if arch in (90, 100) else ""
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"advface_aot_{os.getpid()}.ptx"
    tmp.write_text(ptx)
    try:
        res = subprocess.run(
            [str(ptxas), f"-arch=sm_{arch}{suffix}", "-v", str(tmp), "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ptxas": f"not run: {exc}"}
    finally:
        tmp.unlink(missing_ok=True)
    regs = re.search(r"Used (\d+) registers", res.stderr)
    spills = re.search(r"(\d+) bytes spill stores", res.stderr)
    return {"registers": int(regs.group(1)) if regs else None, "spill_bytes": int(spills.group(1)) if spills else None}


def run(arch: int = 90, quick: bool = False) -> list[dict]:
    """Compile every (config, variant) pair; one row each. ``quick``: the first persistent and the
    first non-persistent config only (both code paths of the kernel)."""
    configs = T.configs()
    if quick:
        configs = [next(c for c in configs if c.kwargs["PERSISTENT"] == p) for p in (True, False)]
    return [_compile(c, v, arch) for c in configs for v in VARIANTS]


def verdict(rows: list[dict], quick: bool = False) -> list[str]:
    """Problems: compile errors, and (all configs compiled, not ``quick``) epilogues with no config
    that compiles and fits."""
    problems = [f"{r['variant']} {r['config']}: {r['error']}" for r in rows if not r["ok"]]
    for name in [] if quick else dict.fromkeys(r["variant"] for r in rows):
        if not any(r["ok"] and r["fits"] for r in rows if r["variant"] == name):
            problems.append(f"{name}: no config compiles within the shared-memory limit")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="compute capability as an integer (default 90: Hopper)")
    p.add_argument("--quick", action="store_true", help="the first persistent and non-persistent configs only")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    rows = run(args.arch, args.quick)
    print(f"Triton {triton.__version__}, sm_{args.arch}, limit {SMEM_LIMIT.get(args.arch, SMEM_LIMIT[90])} B shared")
    print("| config (BM,BN,BK,warps,stages,split,persistent) | variant | shared B | fits | regs | spill B "
          "| TMA ld/st | wgmma |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["config"]
        cfg = (f"{c['BLOCK_M']},{c['BLOCK_N']},{c['BLOCK_K']},{c['num_warps']},{c['num_stages']},"
               f"{c['EPI_SPLIT']},{int(c['PERSISTENT'])}")  # fmt: skip
        if not r["ok"]:
            print(f"| {cfg} | {r['variant']} | compile error: {r['error'][:120]} |")
            continue
        print(
            f"| {cfg} | {r['variant']} | {r['shared_bytes']} | {r['fits']} | {r.get('registers')} | "
            f"{r.get('spill_bytes')} | {r['tma_loads']}/{r['tma_stores']} | {r['wgmma']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"triton": triton.__version__, "arch": args.arch, "rows": rows}, indent=1))
    problems = verdict(rows, args.quick)
    for line in problems:
        print("PROBLEM:", line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
