#!/usr/bin/env bash
# GPU check and benchmark, for a machine with an NVIDIA GPU and no network (PyTorch, Triton,
# pybind11, pytest and nvcc preinstalled). Builds the extension for the local GPU, runs the test
# suite there (GPU tests included), checks the fused engine against the torch reference and times
# every backend side by side (benchmarks/gpu_bench.py). Results go to $OUT, or
# benchmarks/results/gpu-<card> by default.
#
#   bash benchmarks/gpu_check.sh            # everything (about 7 minutes on an H100/H200)
#   BUDGET=200 bash benchmarks/gpu_check.sh # cap the benchmark part (seconds)
#   TOTAL=500 bash benchmarks/gpu_check.sh  # the benchmark stops starting new runs ~TOTAL s after this script began
#   PYTEST_ARGS="tests/test_extension.py" bash benchmarks/gpu_check.sh   # another selection of tests
#   ODD_ENGINES=cuda,mlp bash benchmarks/gpu_check.sh   # engines for the odd-size checks (default: all)
#   BENCH_ARGS="--sections checks,million" bash benchmarks/gpu_check.sh   # parts of the benchmark
#   TMA_TEST_TIMEOUT=0 ...                  # cap (seconds) for the compiled TMA-kernel tests; 0 skips them
#   PYTEST_TIMEOUT=0 ...                    # skips the GPU test files (the cap, seconds, defaults to 240)
#   VARIANTS="triton bf16,triton-pointer bf16,torch.compile bf16" ...   # time only these variants
#
# The Triton TMA kernel's verdict in about 5 minutes (issue #8: Triton bf16 vs torch.compile bf16):
#   PYTEST_TIMEOUT=0 ODD_ENGINES=mlp BENCH_ARGS="--sections checks,standard" \
#     VARIANTS="torch eager fp32,torch.compile bf16,triton bf16,triton-pointer bf16,cuda bf16" bash benchmarks/gpu_check.sh
#
# The default tests are the files with GPU tests (the rest run in CI on CPUs), capped at
# PYTEST_TIMEOUT seconds so that they cannot starve the benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_TESTS="tests/test_cuda_engine.py tests/test_nvrtc.py tests/test_extension.py tests/test_epilogue_kernels.py
 tests/test_array_types.py tests/test_backends.py tests/test_seeding.py tests/test_staging.py tests/test_engine.py
 tests/test_mlp_engine.py tests/test_engine_conformance.py"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-' )
OUT=${OUT:-benchmarks/results/gpu-${card:-unknown}}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

echo "== build (nvcc for this GPU's architecture)"
cc=$($PY -c "import torch; p=torch.cuda.get_device_capability(); print(f'{p[0]}{p[1]}')" 2>/dev/null || echo 90)
export ADVFACE_CUDA_ARCHS=${ADVFACE_CUDA_ARCHS:-$cc} ADVFACE_REQUIRE_CUDA=1
if ! $PY -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  echo "pip editable install failed (see build.log); building in place instead"
  $PY setup.py build_ext --inplace >> "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  [ -e advface_fast/kernels ] || ln -s ../kernels advface_fast/kernels
fi
$PY -c "import advface_fast.engines.extension as e; print('extension:', e.build_info())"
$PY -m advface_fast backends --device cuda  # every registered engine: available, or why not

echo "== tests (GPU tests included; interpreter tests run on the CPU as in CI)"
if [ "${PYTEST_TIMEOUT:-240}" != 0 ]; then
  # shellcheck disable=SC2086
  timeout "${PYTEST_TIMEOUT:-240}" $PY -m pytest -q -rfE ${PYTEST_ARGS:-$GPU_TESTS} -p no:cacheprovider 2>&1 \
    | tee "$OUT/pytest.log" | tail -25
fi

echo "== compiled Triton TMA kernel against the float64 oracle (Hopper and newer; skipped elsewhere)"
# its own process: tests/conftest.py turns the interpreter on for the run above, and Triton decides
# interpreted or compiled when a kernel is decorated
if [ "${TMA_TEST_TIMEOUT:-200}" != 0 ]; then
  TRITON_INTERPRET=0 timeout "${TMA_TEST_TIMEOUT:-200}" $PY -m pytest -q -rfEs tests/test_triton_tma.py \
    -p no:cacheprovider 2>&1 | tee "$OUT/pytest-triton-tma.log" | tail -8
fi

echo "== correctness and benchmark"
budget=${BUDGET:-330}
[ -n "${TOTAL:-}" ] && budget=$((TOTAL - SECONDS))
echo "benchmark budget: ${budget} s (script running for ${SECONDS} s)"
# shellcheck disable=SC2086
$PY benchmarks/gpu_bench.py --out "$OUT" --budget "$budget" ${ODD_ENGINES:+--odd-engines "$ODD_ENGINES"} \
  ${VARIANTS:+--variants "$VARIANTS"} ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
echo "results in $OUT"
exit "$status"
