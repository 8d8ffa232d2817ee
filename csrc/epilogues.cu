// CUDA launchers of the step's elementwise parts (epilogues.h has the math and the contract,
// cuda_kernels.cuh the kernels): one element per thread per grid-stride iteration; the math is
// the same inline code as the C++ versions, so the two agree up to the device's tanhf/expf/erff
// rounding.
#include <cuda_runtime.h>

#include "cuda_kernels.cuh"
#include "epilogues.h"

namespace advface {

using kernels::blocks_for;
using kernels::kThreads;

int out_activation_cuda(const void* a, int a_dtype, float* y, int64_t n, int out_act, void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int b = blocks_for(n);
  if (a_dtype == kFloat32) {
    kernels::out_activation<<<b, kThreads, 0, s>>>(static_cast<const float*>(a), y, n, out_act);
  } else {
    kernels::out_activation<<<b, kThreads, 0, s>>>(static_cast<const uint16_t*>(a), y, n, out_act);
  }
  return (int)cudaGetLastError();
}

int l1_sign_out_grad_cuda(const void* a, int a_dtype, const float* x, void* g, int g_dtype, int64_t n, int out_act,
                          void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int b = blocks_for(n);
  if (a_dtype == kFloat32 && g_dtype == kFloat32) {
    kernels::l1_sign_out_grad<<<b, kThreads, 0, s>>>(static_cast<const float*>(a), x, static_cast<float*>(g), n,
                                                     out_act);
  } else if (a_dtype == kFloat32) {
    kernels::l1_sign_out_grad<<<b, kThreads, 0, s>>>(static_cast<const float*>(a), x, static_cast<uint16_t*>(g), n,
                                                     out_act);
  } else if (g_dtype == kFloat32) {
    kernels::l1_sign_out_grad<<<b, kThreads, 0, s>>>(static_cast<const uint16_t*>(a), x, static_cast<float*>(g), n,
                                                     out_act);
  } else {
    kernels::l1_sign_out_grad<<<b, kThreads, 0, s>>>(static_cast<const uint16_t*>(a), x, static_cast<uint16_t*>(g), n,
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
    kernels::act_backward<<<b, kThreads, 0, s>>>(static_cast<float*>(g), static_cast<const float*>(a), n, act, slope);
  } else if (g_dtype == kFloat32) {
    kernels::act_backward<<<b, kThreads, 0, s>>>(static_cast<float*>(g), static_cast<const uint16_t*>(a), n, act,
                                                 slope);
  } else if (a_dtype == kFloat32) {
    kernels::act_backward<<<b, kThreads, 0, s>>>(static_cast<uint16_t*>(g), static_cast<const float*>(a), n, act,
                                                 slope);
  } else {
    kernels::act_backward<<<b, kThreads, 0, s>>>(static_cast<uint16_t*>(g), static_cast<const uint16_t*>(a), n, act,
                                                 slope);
  }
  return (int)cudaGetLastError();
}

}  // namespace advface
