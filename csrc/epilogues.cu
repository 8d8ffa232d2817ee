// CUDA versions of the step's elementwise parts (epilogues.h has the math and the contract):
// grid-stride loops, one element per thread per iteration; the math is the same inline code
// as the C++ versions, so the two agree up to the device's tanhf/expf/erff rounding.
#include <cuda_runtime.h>

#include <algorithm>

#include "epilogues.h"

namespace advface {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return (int)std::min<int64_t>((n + kThreads - 1) / kThreads, 65535); }

template <typename TA>
__global__ void out_activation_kernel(const TA* __restrict__ a, float* __restrict__ y, int64_t n, int out_act) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = out_act_forward(load(a, i), out_act);
}

template <typename TA, typename TG>
__global__ void l1_sign_out_grad_kernel(const TA* __restrict__ a, const float* __restrict__ x, TG* __restrict__ g,
                                        int64_t n, int out_act) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float y = out_act_forward(load(a, i), out_act);
    store(g, i, out_act_backward(sign_of(y - x[i]), y, out_act));
  }
}

template <typename TG, typename TA>
__global__ void act_backward_kernel(TG* __restrict__ g, const TA* __restrict__ a, int64_t n, int act, float slope) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store(g, i, act_backward_1(load(g, i), load(a, i), act, slope));
}

}  // namespace

int out_activation_cuda(const void* a, int a_dtype, float* y, int64_t n, int out_act, void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a_dtype == kFloat32) {
    out_activation_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<const float*>(a), y, n, out_act);
  } else {
    out_activation_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<const uint16_t*>(a), y, n, out_act);
  }
  return (int)cudaGetLastError();
}

int l1_sign_out_grad_cuda(const void* a, int a_dtype, const float* x, void* g, int g_dtype, int64_t n, int out_act,
                          void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int b = blocks_for(n);
  if (a_dtype == kFloat32 && g_dtype == kFloat32) {
    l1_sign_out_grad_kernel<<<b, kThreads, 0, s>>>(static_cast<const float*>(a), x, static_cast<float*>(g), n, out_act);
  } else if (a_dtype == kFloat32) {
    l1_sign_out_grad_kernel<<<b, kThreads, 0, s>>>(static_cast<const float*>(a), x, static_cast<uint16_t*>(g), n,
                                                   out_act);
  } else if (g_dtype == kFloat32) {
    l1_sign_out_grad_kernel<<<b, kThreads, 0, s>>>(static_cast<const uint16_t*>(a), x, static_cast<float*>(g), n,
                                                   out_act);
  } else {
    l1_sign_out_grad_kernel<<<b, kThreads, 0, s>>>(static_cast<const uint16_t*>(a), x, static_cast<uint16_t*>(g), n,
                                                   out_act);
  }
  return (int)cudaGetLastError();
}

int act_backward_cuda(void* g, int g_dtype, const void* a, int a_dtype, int64_t n, int act, float slope,
                      void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int b = blocks_for(n);
  if (g_dtype == kFloat32 && a_dtype == kFloat32) {
    act_backward_kernel<<<b, kThreads, 0, s>>>(static_cast<float*>(g), static_cast<const float*>(a), n, act, slope);
  } else if (g_dtype == kFloat32) {
    act_backward_kernel<<<b, kThreads, 0, s>>>(static_cast<float*>(g), static_cast<const uint16_t*>(a), n, act, slope);
  } else if (a_dtype == kFloat32) {
    act_backward_kernel<<<b, kThreads, 0, s>>>(static_cast<uint16_t*>(g), static_cast<const float*>(a), n, act, slope);
  } else {
    act_backward_kernel<<<b, kThreads, 0, s>>>(static_cast<uint16_t*>(g), static_cast<const uint16_t*>(a), n, act,
                                               slope);
  }
  return (int)cudaGetLastError();
}

}  // namespace advface
