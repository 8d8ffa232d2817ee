// The non-GEMM parts of a step of the AdvFace loop for an MLP decoder, one pass each, with the
// arithmetic written once (ADVFACE_HD: host and device) for the C++/OpenMP and the CUDA kernels.
//
//   out_activation     y = out_act(a)                                  (decode, and the loop's forward)
//   l1_sign_out_grad   g = sign(out_act(a) - x) * out_act'(out_act(a))  (torch: tanh_backward(sign(y - x), y))
//   act_backward       g = g * act'(a)                                  (torch: leaky_relu_backward(g, a), ...)
//
// a and g are float32 or bfloat16 (bf16 stored as uint16_t, converted to float for the math and
// back with round-to-nearest-even, as torch does); x and y are float32. The formulas follow
// ATen's kernels operation by operation, so results equal torch's except where ATen's vectorised
// transcendentals (tanh, exp, erf: Sleef on the CPU) round differently from the C library's, by
// an ulp.
//
// The header also compiles under NVRTC (cupy.RawModule, the CUDA backend's fallback for installs
// without nvcc: advface_fast/engines/nvrtc_kernels.py), which has no C/C++ standard headers.
#pragma once
#if defined(__CUDACC_RTC__)
typedef long int64_t;  // as <cstdint> on LP64 Linux, so kernel names mangle as under nvcc
typedef unsigned int uint32_t;
typedef unsigned short uint16_t;
#else
#include <cmath>
#include <cstdint>
#include <cstring>
#endif

#if defined(__CUDACC__)
#define ADVFACE_HD __host__ __device__ __forceinline__
#else
#define ADVFACE_HD inline
#endif

namespace advface {

enum DType : int { kFloat32 = 0, kBFloat16 = 1 };
// <cmath>'s M_SQRT1_2 and M_2_SQRTPI (POSIX, absent under NVRTC), as double literals
constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;
enum OutAct : int { kOutNone = 0, kOutTanh = 1, kOutSigmoid = 2 };
enum Act : int { kRelu = 0, kLeakyRelu = 1, kGelu = 2 };

ADVFACE_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

ADVFACE_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// c10::BFloat16's conversions: round to nearest even, NaN to the canonical quiet NaN
ADVFACE_HD uint16_t float_to_bf16(float f) {
  if (f != f) return 0x7FC0;
  const uint32_t u = float_bits(f);
  return static_cast<uint16_t>((u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16);
}

ADVFACE_HD float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

template <typename T>
ADVFACE_HD float load(const T* p, int64_t i);
template <>
ADVFACE_HD float load<float>(const float* p, int64_t i) {
  return p[i];
}
template <>
ADVFACE_HD float load<uint16_t>(const uint16_t* p, int64_t i) {
  return bf16_to_float(p[i]);
}

ADVFACE_HD void store(float* p, int64_t i, float v) { p[i] = v; }
ADVFACE_HD void store(uint16_t* p, int64_t i, float v) { p[i] = float_to_bf16(v); }

ADVFACE_HD float sign_of(float v) { return static_cast<float>((0.f < v) - (v < 0.f)); }

ADVFACE_HD float out_act_forward(float a, int out_act) {
  if (out_act == kOutTanh) return tanhf(a);
  if (out_act == kOutSigmoid) return 1.f / (1.f + expf(-a));
  return a;
}

// grad * out_act'(y) from the output y, as ATen's tanh_backward / sigmoid_backward write it.
// 1 - y*y as one fused multiply-add: what ATen's vectorised CPU kernels and its CUDA kernels
// compute (both compiled with FP contraction); ATen's scalar tail loop rounds twice instead.
ADVFACE_HD float out_act_backward(float grad, float y, int out_act) {
  if (out_act == kOutTanh) return grad * fmaf(-y, y, 1.f);
  if (out_act == kOutSigmoid) return grad * (1.f - y) * y;
  return grad;
}

// the hidden activation, as ATen's relu / leaky_relu / gelu (exact erf form) compute it
ADVFACE_HD float act_forward_1(float a, int act, float slope) {
  if (act == kRelu) return a <= 0.f ? 0.f : a;
  if (act == kLeakyRelu) return a > 0.f ? a : a * slope;
  return a * 0.5f * (1.f + erff(a * static_cast<float>(kSqrtHalf)));
}

// grad * act'(a) from the pre-activation a: threshold_backward, leaky_relu_backward, gelu_backward
ADVFACE_HD float act_backward_1(float grad, float a, int act, float slope) {
  if (act == kRelu) return a <= 0.f ? 0.f : grad;
  if (act == kLeakyRelu) return a > 0.f ? grad : grad * slope;
  const float kAlpha = static_cast<float>(kTwoOverSqrtPi * kSqrtHalf * 0.5);
  const float cdf = 0.5f * (1.f + erff(a * static_cast<float>(kSqrtHalf)));
  const float pdf = kAlpha * expf(a * a * -0.5f);
  return grad * (cdf + a * pdf);
}

#if !defined(__CUDACC_RTC__)  // host launchers; NVRTC compiles device code only
// ---- C++/OpenMP (epilogues_cpu.cpp). dtype arguments are DType values.
void out_activation_cpu(const void* a, int a_dtype, float* y, int64_t n, int out_act);
void l1_sign_out_grad_cpu(const void* a, int a_dtype, const float* x, void* g, int g_dtype, int64_t n, int out_act);
void act_backward_cpu(void* g, int g_dtype, const void* a, int a_dtype, int64_t n, int act, float slope);
// g = sign(y - x) * out_act'(y) from the output y (float32): l1_sign_out_grad after out_act.
// isa: a CpuIsa the CPU supports, or -1 for the best one (cpu_isa()); same bits from each.
enum CpuIsa : int { kIsaBase = 0, kIsaAvx2 = 1, kIsaAvx512 = 2 };
int cpu_isa();
void l1_sign_grad_from_output_cpu(const float* y, const float* x, void* g, int g_dtype, int64_t n, int out_act,
                                  int isa);

#ifdef ADVFACE_WITH_CUDA
// ---- CUDA (epilogues.cu): launched on `stream`; return a cudaError_t as int (0 = success).
int out_activation_cuda(const void* a, int a_dtype, float* y, int64_t n, int out_act, void* stream);
int l1_sign_out_grad_cuda(const void* a, int a_dtype, const float* x, void* g, int g_dtype, int64_t n, int out_act,
                          void* stream);
int act_backward_cuda(void* g, int g_dtype, const void* a, int a_dtype, int64_t n, int act, float slope,
                      void* stream);
// the loop's forward parts: h = act(a) (a, h of one dtype), and y = bf16(x)
int act_forward_cuda(const void* a, void* h, int dtype, int64_t n, int act, float slope, void* stream);
int to_bf16_cuda(const float* x, uint16_t* y, int64_t n, void* stream);
#endif
#endif  // !__CUDACC_RTC__

}  // namespace advface
