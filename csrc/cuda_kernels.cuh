// Every CUDA kernel of the package, as templates in a named namespace, so that the same text
// serves two compilers:
//   nvcc   (clipped_sign_step.cu, epilogues.cu, pgd_loop.cu include this file and launch them);
//   NVRTC  (advface_fast/nvrtc_kernels.py compiles this file at run time through cupy.RawModule
//           and finds each instantiation by its name expression, e.g.
//           "advface::kernels::act_backward<float, unsigned short>"), for installs without nvcc.
// Templates also keep the header ODR-safe when several .cu files include it.
//
// All are grid-stride loops over n elements, launched with kThreads threads per block and
// min(ceil(n / kThreads), kMaxBlocks) blocks. bf16 is stored as uint16_t (epilogues.h).
#pragma once
#include "epilogues.h"

namespace advface {
namespace kernels {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 65535;

// ---- the projected sign step: z = clamp(z + alpha * sign(g), c - eps, c + eps) -------------
__device__ __forceinline__ float sign_step_1(float z, float g, float c, float eps, float alpha) {
  const float s = (float)((g > 0.f) - (g < 0.f));
  return fminf(fmaxf(z + alpha * s, c - eps), c + eps);
}

__device__ __forceinline__ float4 sign_step_1(float4 z, float4 g, float4 c, float eps, float alpha) {
  z.x = sign_step_1(z.x, g.x, c.x, eps, alpha);
  z.y = sign_step_1(z.y, g.y, c.y, eps, alpha);
  z.z = sign_step_1(z.z, g.z, c.z, eps, alpha);
  z.w = sign_step_1(z.w, g.w, c.w, eps, alpha);
  return z;
}

// V = float4: 16-byte loads and stores over n/4 vectors (all pointers 16-byte aligned);
// V = float: elements [start, n), the scalar tail or the whole of unaligned data.
template <typename V>
__global__ void clipped_sign_step(V* __restrict__ z, const V* __restrict__ g, const V* __restrict__ c, int64_t start,
                                  int64_t n, float eps, float alpha) {
  for (int64_t i = start + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    z[i] = sign_step_1(z[i], g[i], c[i], eps, alpha);
}

// ---- the step's elementwise parts (epilogues.h has the math) --------------------------------
template <typename TA>
__global__ void out_activation(const TA* __restrict__ a, float* __restrict__ y, int64_t n, int out_act) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = out_act_forward(load(a, i), out_act);
}

template <typename TA, typename TG>
__global__ void l1_sign_out_grad(const TA* __restrict__ a, const float* __restrict__ x, TG* __restrict__ g, int64_t n,
                                 int out_act) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float y = out_act_forward(load(a, i), out_act);
    store(g, i, out_act_backward(sign_of(y - x[i]), y, out_act));
  }
}

template <typename TG, typename TA>
__global__ void act_backward(TG* __restrict__ g, const TA* __restrict__ a, int64_t n, int act, float slope) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(g, i, act_backward_1(load(g, i), load(a, i), act, slope));
}

// ---- the loop's forward: hidden activations, and z in the GEMM dtype ------------------------
template <typename T>
__global__ void act_forward(const T* __restrict__ a, T* __restrict__ h, int64_t n, int act, float slope) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(h, i, act_forward_1(load(a, i), act, slope));
}

template <typename T>
__global__ void to_bf16(const T* __restrict__ x, uint16_t* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = float_to_bf16(load(x, i));
}

#if !defined(__CUDACC_RTC__)
// host side (nvcc): the launch geometry every kernel above is written for
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return (int)(b < kMaxBlocks ? b : kMaxBlocks);
}
#endif

}  // namespace kernels
}  // namespace advface
