// CUDA launchers of the step's elementwise parts (epilogues.h has the math and the contract,
// cuda_kernels.cuh the kernels): 16-byte packs of 8 elements per thread where every pointer is
// aligned to its pack, one element per thread for the tail and for unaligned data. The math is
// the same inline code as the C++ versions, so the two agree up to the device's tanhf/expf/erff
// rounding.
#include <cuda_runtime.h>

#include "cuda_kernels.cuh"
#include "epilogues.h"

namespace advface {
namespace {

using kernels::blocks_for;
using kernels::kThreads;
using kernels::pack_aligned;
using kernels::packs_then_tail;

int bytes_of(int dtype) { return dtype == kFloat32 ? 4 : 2; }

template <typename TA>
void out_activation_launch(const TA* a, float* y, int64_t n, int out_act, cudaStream_t s) {
  packs_then_tail(n, pack_aligned(a, sizeof(TA)) && pack_aligned(y, 4), [&](auto N, int64_t b, int64_t e) {
    kernels::out_activation<decltype(N)::value><<<blocks_for(e - b), kThreads, 0, s>>>(a, y, b, e, out_act);
  });
}

template <typename TA, typename TG>
void l1_sign_out_grad_launch(const TA* a, const float* x, TG* g, int64_t n, int out_act, cudaStream_t s) {
  const bool vec = pack_aligned(a, sizeof(TA)) && pack_aligned(x, 4) && pack_aligned(g, sizeof(TG));
  packs_then_tail(n, vec, [&](auto N, int64_t b, int64_t e) {
    kernels::l1_sign_out_grad<decltype(N)::value><<<blocks_for(e - b), kThreads, 0, s>>>(a, x, g, b, e, out_act);
  });
}

template <typename TG, typename TA>
void act_backward_launch(TG* g, const TA* a, int64_t n, int act, float slope, cudaStream_t s) {
  packs_then_tail(n, pack_aligned(g, sizeof(TG)) && pack_aligned(a, sizeof(TA)), [&](auto N, int64_t b, int64_t e) {
    kernels::act_backward<decltype(N)::value><<<blocks_for(e - b), kThreads, 0, s>>>(g, a, b, e, act, slope);
  });
}

template <typename T>
void act_forward_launch(const T* a, T* h, int64_t n, int act, float slope, cudaStream_t s) {
  packs_then_tail(n, pack_aligned(a, sizeof(T)) && pack_aligned(h, sizeof(T)), [&](auto N, int64_t b, int64_t e) {
    kernels::act_forward<decltype(N)::value><<<blocks_for(e - b), kThreads, 0, s>>>(a, h, b, e, act, slope);
  });
}

}  // namespace

int out_activation_cuda(const void* a, int a_dtype, float* y, int64_t n, int out_act, void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a_dtype == kFloat32) {
    out_activation_launch(static_cast<const float*>(a), y, n, out_act, s);
  } else {
    out_activation_launch(static_cast<const uint16_t*>(a), y, n, out_act, s);
  }
  return (int)cudaGetLastError();
}

int l1_sign_out_grad_cuda(const void* a, int a_dtype, const float* x, void* g, int g_dtype, int64_t n, int out_act,
                          void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a_dtype == kFloat32 && g_dtype == kFloat32) {
    l1_sign_out_grad_launch(static_cast<const float*>(a), x, static_cast<float*>(g), n, out_act, s);
  } else if (a_dtype == kFloat32) {
    l1_sign_out_grad_launch(static_cast<const float*>(a), x, static_cast<uint16_t*>(g), n, out_act, s);
  } else if (g_dtype == kFloat32) {
    l1_sign_out_grad_launch(static_cast<const uint16_t*>(a), x, static_cast<float*>(g), n, out_act, s);
  } else {
    l1_sign_out_grad_launch(static_cast<const uint16_t*>(a), x, static_cast<uint16_t*>(g), n, out_act, s);
  }
  return (int)cudaGetLastError();
}

int act_backward_cuda(void* g, int g_dtype, const void* a, int a_dtype, int64_t n, int act, float slope,
                      void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (g_dtype == kFloat32 && a_dtype == kFloat32) {
    act_backward_launch(static_cast<float*>(g), static_cast<const float*>(a), n, act, slope, s);
  } else if (g_dtype == kFloat32) {
    act_backward_launch(static_cast<float*>(g), static_cast<const uint16_t*>(a), n, act, slope, s);
  } else if (a_dtype == kFloat32) {
    act_backward_launch(static_cast<uint16_t*>(g), static_cast<const float*>(a), n, act, slope, s);
  } else {
    act_backward_launch(static_cast<uint16_t*>(g), static_cast<const uint16_t*>(a), n, act, slope, s);
  }
  return (int)cudaGetLastError();
}

int act_forward_cuda(const void* a, void* h, int dtype, int64_t n, int act, float slope, void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (dtype == kFloat32) {
    act_forward_launch(static_cast<const float*>(a), static_cast<float*>(h), n, act, slope, s);
  } else {
    act_forward_launch(static_cast<const uint16_t*>(a), static_cast<uint16_t*>(h), n, act, slope, s);
  }
  return (int)cudaGetLastError();
}

int to_bf16_cuda(const float* x, uint16_t* y, int64_t n, void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  packs_then_tail(n, pack_aligned(x, 4) && pack_aligned(y, 2), [&](auto N, int64_t b, int64_t e) {
    kernels::to_bf16<decltype(N)::value><<<blocks_for(e - b), kThreads, 0, s>>>(x, y, b, e);
  });
  return (int)cudaGetLastError();
}

}  // namespace advface
