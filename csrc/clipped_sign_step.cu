// CUDA projected sign step. One pass over the (B*D) elements; 16-byte (float4) loads and stores
// when all three pointers are 16-byte aligned, scalar tail otherwise.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "clipped_sign_step.h"

namespace advface {
namespace {

__device__ __forceinline__ float step1(float z, float g, float c, float eps, float alpha) {
  const float s = (float)((g > 0.f) - (g < 0.f));
  return fminf(fmaxf(z + alpha * s, c - eps), c + eps);
}

__global__ void clipped_sign_step_vec4(float4* __restrict__ z, const float4* __restrict__ g,
                                       const float4* __restrict__ c, int64_t n4, float eps, float alpha) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    float4 zv = z[i];
    const float4 gv = g[i];
    const float4 cv = c[i];
    zv.x = step1(zv.x, gv.x, cv.x, eps, alpha);
    zv.y = step1(zv.y, gv.y, cv.y, eps, alpha);
    zv.z = step1(zv.z, gv.z, cv.z, eps, alpha);
    zv.w = step1(zv.w, gv.w, cv.w, eps, alpha);
    z[i] = zv;
  }
}

__global__ void clipped_sign_step_scalar(float* __restrict__ z, const float* __restrict__ g,
                                         const float* __restrict__ c, int64_t start, int64_t n, float eps,
                                         float alpha) {
  for (int64_t i = start + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    z[i] = step1(z[i], g[i], c[i], eps, alpha);
  }
}

}  // namespace

int clipped_sign_step_cuda(float* z, const float* g, const float* c, int64_t n, float eps, float alpha,
                           void* stream) {
  if (n <= 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  const bool aligned = ((reinterpret_cast<uintptr_t>(z) | reinterpret_cast<uintptr_t>(g) |
                         reinterpret_cast<uintptr_t>(c)) & 15) == 0;
  int64_t done = 0;
  if (aligned) {
    const int64_t n4 = n / 4;
    if (n4 > 0) {
      const int blocks = (int)std::min<int64_t>((n4 + threads - 1) / threads, 65535);
      clipped_sign_step_vec4<<<blocks, threads, 0, s>>>(reinterpret_cast<float4*>(z),
                                                        reinterpret_cast<const float4*>(g),
                                                        reinterpret_cast<const float4*>(c), n4, eps, alpha);
    }
    done = n4 * 4;
  }
  if (done < n) {
    const int blocks = (int)std::min<int64_t>((n - done + threads - 1) / threads, 65535);
    clipped_sign_step_scalar<<<blocks, threads, 0, s>>>(z, g, c, done, n, eps, alpha);
  }
  return (int)cudaGetLastError();
}

int cuda_device_count(int* count) { return (int)cudaGetDeviceCount(count); }

const char* cuda_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

}  // namespace advface
