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
from advface_fast.kernels import mlp_gemm as P
from advface_fast.kernels import mlp_gemm_tma as T

from advface_fast.models.activations import ACT_CODES, OUT_ACT_CODES

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


def _consts(epi: dict, dtypes: tuple, kmajor: bool) -> dict:
    """The epilogue constexprs both kernels share, from a VARIANTS entry."""
    out_t, _, _, pre_t = dtypes
    return {
        "EPI": epi["EPI"], "ACT": ACT_CODES[epi.get("ACT", "relu")],
        "OUT_ACT": OUT_ACT_CODES[epi.get("OUT_ACT", "none")],
        "HAS_BIAS": epi.get("HAS_BIAS", True), "SAVE_PRE": epi.get("SAVE_PRE", False),
        "OUT_BF16": out_t == "bf16", "PRE_BF16": pre_t == "bf16", "INTERPRET": False,
    }  # fmt: skip


def _build(fn, sig: dict, consts: dict, config: triton.Config, arch: int, row: dict, attrs: dict | None = None) -> dict:
    """Compile ``fn`` for sm_``arch``; ``row`` plus what it cost."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = sig | dict.fromkeys(consts, "constexpr")
    src = ASTSource(
        fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()}, attrs=attrs
    )
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


def _compile_pointer(config: triton.Config, variant: tuple, arch: int) -> dict:
    """The pointer kernel (``mlp_gemm._mlp_gemm_kernel``) for the same launch, specialised as its
    JIT would be for contiguous tensors: unit strides as constants, the others divisible by 16."""
    name, epi, dtypes, kmajor = variant
    out_t, aux_t, aux2_t, pre_t = dtypes
    strides = {
        "stride_am": 16, "stride_ak": 1, "stride_bk": 1 if kmajor else 16, "stride_bn": 16 if kmajor else 1,
        "stride_om": 16, "stride_on": 1, "stride_xm": 16, "stride_xn": 1, "stride_ym": 16, "stride_yn": 1,
    }  # fmt: skip
    sig = {
        "a_ptr": "*bf16", "b_ptr": "*bf16", "out_ptr": f"*{out_t}", "bias_ptr": "*fp32",
        "aux_ptr": f"*{aux_t or out_t}", "aux2_ptr": f"*{aux2_t or out_t}", "pre_ptr": f"*{pre_t or out_t}",
        **dict.fromkeys(("M", "N", "K"), "i32"), **{k: "i32" for k, v in strides.items() if v != 1},
        **dict.fromkeys(("slope", "eps", "alpha"), "fp32"),
    }  # fmt: skip
    consts = _consts(epi, dtypes, kmajor) | {k: 1 for k, v in strides.items() if v == 1}
    consts |= {"OPERAND_BF16": True, "CAST_A": False, "CAST_B": False, "INPUT_PRECISION": "tf32", **config.kwargs}
    fn = P._mlp_gemm_kernel.fn
    # 16-byte aligned pointers, and sizes and strides divisible by 16, as the JIT marks them at the
    # standard configuration (every size a multiple of 16). Without it the K-tail masks vary along
    # the contiguous dimension, loads shrink to 2 bytes and the K loop is not pipelined.
    aligned = [k for k in sig if k.endswith("_ptr") or k in "MNK" or (k.startswith("stride") and strides[k] == 16)]
    attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]] for k in aligned}
    row = {"kernel": "pointer", "variant": name, "config": {**config.kwargs, "num_warps": config.num_warps,
                                                            "num_stages": config.num_stages}}  # fmt: skip
    return _build(fn, sig, consts, config, arch, row, attrs)


def _compile(config: triton.Config, variant: tuple, arch: int) -> dict:
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
    consts = _consts(epi, (out_t, aux_t, aux2_t, pre_t), kmajor) | {"B_KMAJOR": kmajor, **kw}
    consts["EPI_BYTES"] = sum({"bf16": 2, "fp32": 4}[t] for t in (out_t, aux_t, aux2_t, pre_t) if t)
    row = {"kernel": "tma", "variant": name, "config": {**kw, "num_warps": config.num_warps,
                                                        "num_stages": config.num_stages}}  # fmt: skip
    return _build(T._mlp_gemm_tma_kernel.fn, sig, consts, config, arch, row)


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
    """Compile every (config, variant) pair of the TMA kernel, and of the pointer kernel's bf16
    configs; one row each. ``quick``: the first persistent and the first non-persistent TMA config
    (both code paths of the kernel) and the first bf16 pointer config."""
    configs = T.configs()
    pointer = [c for c in P.gemm_configs() if c.kwargs["BLOCK_K"] == 64]  # bf16's (mlp_gemm.prune_configs)
    if quick:
        configs = [next(c for c in configs if c.kwargs["PERSISTENT"] == p) for p in (True, False)]
        pointer = pointer[:1]
    rows = [_compile(c, v, arch) for c in configs for v in VARIANTS]
    return rows + [_compile_pointer(c, v, arch) for c in pointer for v in VARIANTS]


def verdict(rows: list[dict], quick: bool = False) -> list[str]:
    """Problems: compile errors, and (all configs compiled, not ``quick``) epilogues with no config
    that compiles and fits."""
    problems = [f"{r['kernel']} kernel, {r['variant']} {r['config']}: {r['error']}" for r in rows if not r["ok"]]
    for kernel, name in [] if quick else dict.fromkeys((r["kernel"], r["variant"]) for r in rows):
        if not any(r["ok"] and r["fits"] for r in rows if (r["kernel"], r["variant"]) == (kernel, name)):
            problems.append(f"{kernel} kernel, {name}: no config compiles within the shared-memory limit")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="compute capability as an integer (default 90: Hopper)")
    p.add_argument("--quick", action="store_true", help="the first persistent and non-persistent configs only")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    rows = run(args.arch, args.quick)
    print(f"Triton {triton.__version__}, sm_{args.arch}, limit {SMEM_LIMIT.get(args.arch, SMEM_LIMIT[90])} B shared")
    print("| kernel | config (BM,BN,BK,warps,stages[,split,persistent]) | variant | shared B | fits | regs | spill B "
          "| TMA ld/st | wgmma |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["config"]
        cfg = f"{c['BLOCK_M']},{c['BLOCK_N']},{c['BLOCK_K']},{c['num_warps']},{c['num_stages']}"
        if "PERSISTENT" in c:
            cfg += f",{c['EPI_SPLIT']},{int(c['PERSISTENT'])}"
        if not r["ok"]:
            print(f"| {r['kernel']} | {cfg} | {r['variant']} | compile error: {r['error'][:120]} |")
            continue
        print(
            f"| {r['kernel']} | {cfg} | {r['variant']} | {r['shared_bytes']} | {r['fits']} | {r.get('registers')} | "
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
