// C++/OpenMP versions of the step's elementwise parts (epilogues.h has the math and the contract).
#include <stdexcept>
#include <string>

#include "cpu_parallel.h"
#include "epilogues.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define ADVFACE_X86_DISPATCH 1
#else
#define ADVFACE_X86_DISPATCH 0
#endif

namespace advface {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this, threads cost more than they save

template <typename TA>
void out_activation_impl(const TA* a, float* y, int64_t n, int out_act) {
  parallel_chunks(n, kParallelMin, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = out_act_forward(load(a, i), out_act);
  });
}

template <typename TA, typename TG>
void l1_sign_out_grad_impl(const TA* a, const float* x, TG* g, int64_t n, int out_act) {
  parallel_chunks(n, kParallelMin, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float y = out_act_forward(load(a, i), out_act);
      store(g, i, out_act_backward(sign_of(y - x[i]), y, out_act));
    }
  });
}

// l1_sign_grad_from_output: no transcendental (y is given), so the loop vectorises; it is the
// CPU's one-pass form of torch's sub + sign + tanh_backward + to(dtype) on the image (4 passes,
// 3 temporaries). fmaf needs the FMA instruction to inline and vectorise (x86-64's baseline has
// none: a libm call per element, ~3 ns), so on x86-64 the loop is also compiled for AVX2+FMA and
// AVX-512 (target attributes; picked at run time by cpu_isa()). Every version computes the same
// bits: FMA is exactly rounded whether an instruction or libm does it.
#define ADVFACE_L1_FROM_OUTPUT_LOOP(NAME, ATTR)                                                             \
  template <typename TG>                                                                                    \
  ATTR void NAME(const float* y, const float* x, TG* g, int64_t begin, int64_t end, int out_act) {          \
    for (int64_t i = begin; i < end; ++i) store(g, i, out_act_backward(sign_of(y[i] - x[i]), y[i], out_act)); \
  }

ADVFACE_L1_FROM_OUTPUT_LOOP(l1_from_output_base, )
#if ADVFACE_X86_DISPATCH
ADVFACE_L1_FROM_OUTPUT_LOOP(l1_from_output_avx2, __attribute__((target("avx2,fma"))))
ADVFACE_L1_FROM_OUTPUT_LOOP(l1_from_output_avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))))
#endif
#undef ADVFACE_L1_FROM_OUTPUT_LOOP

// ~0.1 ns an element in one thread: threads pay only on large images (and torch's own OpenMP
// pool is busy with the GEMMs around this op)
constexpr int64_t kL1ParallelMin = 1 << 20;

template <typename TG>
void l1_from_output(const float* y, const float* x, TG* g, int64_t n, int out_act, int isa) {
  parallel_chunks(n, kL1ParallelMin, [&](int64_t begin, int64_t end) {
#if ADVFACE_X86_DISPATCH
    if (isa == kIsaAvx512) return l1_from_output_avx512(y, x, g, begin, end, out_act);
    if (isa == kIsaAvx2) return l1_from_output_avx2(y, x, g, begin, end, out_act);
#endif
    l1_from_output_base(y, x, g, begin, end, out_act);
  });
}

template <typename TG, typename TA>
void act_backward_impl(TG* g, const TA* a, int64_t n, int act, float slope) {
  parallel_chunks(n, kParallelMin, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) store(g, i, act_backward_1(load(g, i), load(a, i), act, slope));
  });
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

int cpu_isa() {
#if ADVFACE_X86_DISPATCH
  static const int isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
      return (int)kIsaAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return (int)kIsaAvx2;
    return (int)kIsaBase;
  }();
  return isa;
#else
  return kIsaBase;
#endif
}

void l1_sign_grad_from_output_cpu(const float* y, const float* x, void* g, int g_dtype, int64_t n, int out_act,
                                  int isa) {
  check_dtype(g_dtype, "l1_sign_grad_from_output_cpu");
  if (isa < 0) isa = cpu_isa();
  if (isa > cpu_isa()) throw std::invalid_argument("l1_sign_grad_from_output_cpu: this CPU lacks the requested ISA");
  if (g_dtype == kFloat32) {
    l1_from_output(y, x, static_cast<float*>(g), n, out_act, isa);
  } else {
    l1_from_output(y, x, static_cast<uint16_t*>(g), n, out_act, isa);
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
