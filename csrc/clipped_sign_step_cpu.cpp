#include "clipped_sign_step.h"

#include <algorithm>

namespace advface {

template <typename T>
void clipped_sign_step_cpu(T* z, const T* g, const T* c, int64_t n, double eps, double alpha) {
  const T e = static_cast<T>(eps);
  const T a = static_cast<T>(alpha);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const T s = static_cast<T>((g[i] > T(0)) - (g[i] < T(0)));
    const T lo = c[i] - e;
    const T hi = c[i] + e;
    // torch.clamp(x, lo, hi) == min(max(x, lo), hi)
    z[i] = std::min(std::max(z[i] + a * s, lo), hi);
  }
}

template void clipped_sign_step_cpu<float>(float*, const float*, const float*, int64_t, double, double);
template void clipped_sign_step_cpu<double>(double*, const double*, const double*, int64_t, double, double);

}  // namespace advface
