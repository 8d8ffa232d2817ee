// The projected sign step of the AdvFace loop, in place:
//   z = clamp(z + alpha * sign(g), c - eps, c + eps)        (torch: clipped_sign_step_ref)
// sign(0) = 0. eps and alpha are rounded to the tensor's type first, as torch does with a
// Python scalar, so results match the reference bit for bit.
#pragma once
#include <cstdint>

namespace advface {

template <typename T>
void clipped_sign_step_cpu(T* z, const T* g, const T* c, int64_t n, double eps, double alpha);

#ifdef ADVFACE_WITH_CUDA
// Returns a cudaError_t as int (0 = success); never aborts the process.
int clipped_sign_step_cuda(float* z, const float* g, const float* c, int64_t n, float eps, float alpha,
                           void* stream);
int cuda_device_count(int* count);
const char* cuda_error_string(int err);
#endif

}  // namespace advface
