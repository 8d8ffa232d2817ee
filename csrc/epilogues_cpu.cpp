// C++/OpenMP versions of the step's elementwise parts (epilogues.h has the math and the contract).
#include <stdexcept>
#include <string>

#include "epilogues.h"

namespace advface {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this, threads cost more than they save

template <typename TA>
void out_activation_impl(const TA* a, float* y, int64_t n, int out_act) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = out_act_forward(load(a, i), out_act);
}

template <typename TA, typename TG>
void l1_sign_out_grad_impl(const TA* a, const float* x, TG* g, int64_t n, int out_act) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float y = out_act_forward(load(a, i), out_act);
    store(g, i, out_act_backward(sign_of(y - x[i]), y, out_act));
  }
}

template <typename TG, typename TA>
void act_backward_impl(TG* g, const TA* a, int64_t n, int act, float slope) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) store(g, i, act_backward_1(load(g, i), load(a, i), act, slope));
}

void check_dtype(int dtype, const char* what) {
  if (dtype != kFloat32 && dtype != kBFloat16) throw std::invalid_argument(std::string(what) + ": unknown dtype code");
}

}  // namespace

void out_activation_cpu(const void* a, int a_dtype, float* y, int64_t n, int out_act) {
  check_dtype(a_dtype, "out_activation_cpu");
  if (a_dtype == kFloat32) {
    out_activation_impl(static_cast<const float*>(a), y, n, out_act);
  } else {
    out_activation_impl(static_cast<const uint16_t*>(a), y, n, out_act);
  }
}

void l1_sign_out_grad_cpu(const void* a, int a_dtype, const float* x, void* g, int g_dtype, int64_t n, int out_act) {
  check_dtype(a_dtype, "l1_sign_out_grad_cpu");
  check_dtype(g_dtype, "l1_sign_out_grad_cpu");
  if (a_dtype == kFloat32 && g_dtype == kFloat32) {
    l1_sign_out_grad_impl(static_cast<const float*>(a), x, static_cast<float*>(g), n, out_act);
  } else if (a_dtype == kFloat32) {
    l1_sign_out_grad_impl(static_cast<const float*>(a), x, static_cast<uint16_t*>(g), n, out_act);
  } else if (g_dtype == kFloat32) {
    l1_sign_out_grad_impl(static_cast<const uint16_t*>(a), x, static_cast<float*>(g), n, out_act);
  } else {
    l1_sign_out_grad_impl(static_cast<const uint16_t*>(a), x, static_cast<uint16_t*>(g), n, out_act);
  }
}

void act_backward_cpu(void* g, int g_dtype, const void* a, int a_dtype, int64_t n, int act, float slope) {
  check_dtype(a_dtype, "act_backward_cpu");
  check_dtype(g_dtype, "act_backward_cpu");
  if (g_dtype == kFloat32 && a_dtype == kFloat32) {
    act_backward_impl(static_cast<float*>(g), static_cast<const float*>(a), n, act, slope);
  } else if (g_dtype == kFloat32) {
    act_backward_impl(static_cast<float*>(g), static_cast<const uint16_t*>(a), n, act, slope);
  } else if (a_dtype == kFloat32) {
    act_backward_impl(static_cast<uint16_t*>(g), static_cast<const float*>(a), n, act, slope);
  } else {
    act_backward_impl(static_cast<uint16_t*>(g), static_cast<const uint16_t*>(a), n, act, slope);
  }
}

}  // namespace advface
