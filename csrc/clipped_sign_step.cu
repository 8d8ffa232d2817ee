// CUDA projected sign step. One pass over the (B*D) elements; 16-byte (float4) loads and stores
// when all three pointers are 16-byte aligned, scalar tail otherwise (kernels in cuda_kernels.cuh).
#include <cuda_runtime.h>

#include <cstdint>

#include "clipped_sign_step.h"
#include "cuda_kernels.cuh"

namespace advface {

int clipped_sign_step_cuda(float* z, const float* g, const float* c, int64_t n, float eps, float alpha,
                           void* stream) {
  using kernels::blocks_for;
  using kernels::kThreads;
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool aligned = ((reinterpret_cast<uintptr_t>(z) | reinterpret_cast<uintptr_t>(g) |
                         reinterpret_cast<uintptr_t>(c)) & 15) == 0;
  int64_t done = 0;
  if (aligned) {
    const int64_t n4 = n / 4;
    if (n4 > 0) {
      kernels::clipped_sign_step<float4><<<blocks_for(n4), kThreads, 0, s>>>(
          reinterpret_cast<float4*>(z), reinterpret_cast<const float4*>(g), reinterpret_cast<const float4*>(c), 0, n4,
          eps, alpha);
    }
    done = n4 * 4;
  }
  if (done < n) {
    kernels::clipped_sign_step<float><<<blocks_for(n - done), kThreads, 0, s>>>(z, g, c, done, n, eps, alpha);
  }
  return (int)cudaGetLastError();
}

int cuda_device_count(int* count) { return (int)cudaGetDeviceCount(count); }

const char* cuda_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

}  // namespace advface
