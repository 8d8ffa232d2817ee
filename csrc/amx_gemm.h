// bf16 GEMMs on Intel AMX tiles (amx_gemm_cpu.cpp): out (m x n) = a (m x k, bf16) @ b + bias, with
// b pre-packed in 1 KiB tiles (advface_fast.ops.amx_pack) and fp32 accumulation. Host pointers.
#pragma once
#include <cstdint>

namespace advface {

// 1 when this CPU and OS run AMX-BF16 tiles (cpuid, XCR0, and Linux's per-process permission), else 0
int amx_available();

// m > 0; k, n positive multiples of 32; bias: float32[n] or 0; out_dtype: 0 float32, 1 bfloat16 (RNE)
void amx_linear_cpu(std::uintptr_t a, int64_t m, int64_t k, std::uintptr_t b_packed, int64_t n, std::uintptr_t bias,
                    std::uintptr_t out, int out_dtype);

}  // namespace advface
