// Every CUDA kernel of the package, as templates in a named namespace, so that the same text
// serves two compilers:
//   nvcc   (clipped_sign_step.cu, epilogues.cu, pgd_loop.cu include this file and launch them);
//   NVRTC  (advface_fast/engines/nvrtc_kernels.py compiles this file at run time through cupy.RawModule
//           and finds each instantiation by its name expression, e.g.
//           "advface::kernels::act_backward<float, unsigned short>"), for installs without nvcc.
// Templates also keep the header ODR-safe when several .cu files include it.
//
// All are grid-stride loops, launched with kThreads threads per block and
// min(ceil(iterations / kThreads), kMaxBlocks) blocks. bf16 is stored as uint16_t (epilogues.h).
#pragma once
#include "epilogues.h"
#if !defined(__CUDACC_RTC__)
#include <cstdint>
#include <type_traits>
#endif

namespace advface {
namespace kernels {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 65535;

// every kernel is a grid-stride loop over [start, end)
#define ADVFACE_GRID_STRIDE(i, start, end) \
  for (int64_t i = (start) + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (end); i += (int64_t)gridDim.x * blockDim.x)

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
  ADVFACE_GRID_STRIDE(i, start, n) z[i] = sign_step_1(z[i], g[i], c[i], eps, alpha);
}

// ---- the step's elementwise parts (epilogues.h has the math) --------------------------------
// Each is a template on N, the elements a thread takes per iteration as one Pack: N = kVec (8)
// makes every load and store 16 bytes (bf16) or 2 x 16 bytes (fp32) over packs [start, end) when
// all pointers are aligned to their Pack; N = 1 covers elements [start, end): the tail after the
// last whole pack, or all of unaligned data. (The launchers: epilogues.cu, nvrtc_kernels.py.)
constexpr int kVec = 8;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <int N, typename TA>
__global__ void out_activation(const TA* __restrict__ a, float* __restrict__ y, int64_t start, int64_t end,
                               int out_act) {
  ADVFACE_GRID_STRIDE(i, start, end) {
    const Pack<TA, N> av = reinterpret_cast<const Pack<TA, N>*>(a)[i];
    Pack<float, N> yv;
#pragma unroll
    for (int j = 0; j < N; ++j) yv.v[j] = out_act_forward(load(av.v, j), out_act);
    reinterpret_cast<Pack<float, N>*>(y)[i] = yv;
  }
}

template <int N, typename TA, typename TG>
__global__ void l1_sign_out_grad(const TA* __restrict__ a, const float* __restrict__ x, TG* __restrict__ g,
                                 int64_t start, int64_t end, int out_act) {
  ADVFACE_GRID_STRIDE(i, start, end) {
    const Pack<TA, N> av = reinterpret_cast<const Pack<TA, N>*>(a)[i];
    const Pack<float, N> xv = reinterpret_cast<const Pack<float, N>*>(x)[i];
    Pack<TG, N> gv;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float y = out_act_forward(load(av.v, j), out_act);
      store(gv.v, j, out_act_backward(sign_of(y - xv.v[j]), y, out_act));
    }
    reinterpret_cast<Pack<TG, N>*>(g)[i] = gv;
  }
}

template <int N, typename TG, typename TA>
__global__ void act_backward(TG* __restrict__ g, const TA* __restrict__ a, int64_t start, int64_t end, int act,
                             float slope) {
  ADVFACE_GRID_STRIDE(i, start, end) {
    Pack<TG, N> gv = reinterpret_cast<const Pack<TG, N>*>(g)[i];
    const Pack<TA, N> av = reinterpret_cast<const Pack<TA, N>*>(a)[i];
#pragma unroll
    for (int j = 0; j < N; ++j) store(gv.v, j, act_backward_1(load(gv.v, j), load(av.v, j), act, slope));
    reinterpret_cast<Pack<TG, N>*>(g)[i] = gv;
  }
}

// ---- the loop's forward: hidden activations, and z in the GEMM dtype ------------------------
template <int N, typename T>
__global__ void act_forward(const T* __restrict__ a, T* __restrict__ h, int64_t start, int64_t end, int act,
                            float slope) {
  ADVFACE_GRID_STRIDE(i, start, end) {
    const Pack<T, N> av = reinterpret_cast<const Pack<T, N>*>(a)[i];
    Pack<T, N> hv;
#pragma unroll
    for (int j = 0; j < N; ++j) store(hv.v, j, act_forward_1(load(av.v, j), act, slope));
    reinterpret_cast<Pack<T, N>*>(h)[i] = hv;
  }
}

template <int N>
__global__ void to_bf16(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t start, int64_t end) {
  ADVFACE_GRID_STRIDE(i, start, end) {
    const Pack<float, N> xv = reinterpret_cast<const Pack<float, N>*>(x)[i];
    Pack<uint16_t, N> yv;
#pragma unroll
    for (int j = 0; j < N; ++j) yv.v[j] = float_to_bf16(xv.v[j]);
    reinterpret_cast<Pack<uint16_t, N>*>(y)[i] = yv;
  }
}

#undef ADVFACE_GRID_STRIDE

#if !defined(__CUDACC_RTC__)
// host side (nvcc): the launch geometry every kernel above is written for
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return (int)(b < kMaxBlocks ? b : kMaxBlocks);
}

// Whether p may be read as Packs of kVec elements of `elem_bytes` bytes.
inline bool pack_aligned(const void* p, int elem_bytes) {
  return (reinterpret_cast<uintptr_t>(p) % (uintptr_t)(elem_bytes * kVec)) == 0;
}

// launch(N, start, end) for N = kVec over the whole packs (when `vec`), then N = 1 over the rest.
template <typename Launch>
void packs_then_tail(int64_t n, bool vec, Launch launch) {
  int64_t done = 0;
  if (vec && n >= kVec) {
    launch(std::integral_constant<int, kVec>{}, 0, n / kVec);
    done = n / kVec * kVec;
  }
  if (done < n) launch(std::integral_constant<int, 1>{}, done, n);
}
#endif

}  // namespace kernels
}  // namespace advface
