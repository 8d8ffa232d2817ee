// pybind11 bindings of advface_fast._C. Raw pointers (as integers), sizes and streams only: no
// libtorch ABI, so the module works with any torch version and with cupy arrays alike.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "amx_gemm.h"
#include "clipped_sign_step.h"
#include "epilogues.h"
#include "seeding.h"
#include "pgd_loop.h"

namespace py = pybind11;

#ifndef ADVFACE_CUDA_ARCHS
#define ADVFACE_CUDA_ARCHS ""
#endif

namespace {

void clipped_sign_step_cpu(std::uintptr_t z, std::uintptr_t g, std::uintptr_t c, int64_t n, double eps,
                           double alpha, const std::string& dtype) {
  py::gil_scoped_release release;
  if (dtype == "float32") {
    advface::clipped_sign_step_cpu<float>(reinterpret_cast<float*>(z), reinterpret_cast<const float*>(g),
                                          reinterpret_cast<const float*>(c), n, eps, alpha);
  } else if (dtype == "float64") {
    advface::clipped_sign_step_cpu<double>(reinterpret_cast<double*>(z), reinterpret_cast<const double*>(g),
                                           reinterpret_cast<const double*>(c), n, eps, alpha);
  } else {
    throw std::invalid_argument("clipped_sign_step_cpu: dtype must be float32 or float64, got " + dtype);
  }
}

template <typename T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void out_activation_cpu(std::uintptr_t a, int a_dtype, std::uintptr_t y, int64_t n, int out_act) {
  py::gil_scoped_release release;
  advface::out_activation_cpu(ptr<const void>(a), a_dtype, ptr<float>(y), n, out_act);
}

void l1_sign_out_grad_cpu(std::uintptr_t a, int a_dtype, std::uintptr_t x, std::uintptr_t g, int g_dtype, int64_t n,
                          int out_act) {
  py::gil_scoped_release release;
  advface::l1_sign_out_grad_cpu(ptr<const void>(a), a_dtype, ptr<const float>(x), ptr<void>(g), g_dtype, n, out_act);
}

void l1_sign_grad_from_output_cpu(std::uintptr_t y, std::uintptr_t x, std::uintptr_t g, int g_dtype, int64_t n,
                                  int out_act, int isa) {
  py::gil_scoped_release release;
  advface::l1_sign_grad_from_output_cpu(ptr<const float>(y), ptr<const float>(x), ptr<void>(g), g_dtype, n, out_act,
                                        isa);
}

void row_uniform_cpu(uint64_t seed, std::uintptr_t rows, int64_t n_rows, int64_t dim, std::uintptr_t out,
                     int out_dtype) {
  py::gil_scoped_release release;
  advface::row_uniform_cpu(seed, ptr<const int64_t>(rows), n_rows, dim, ptr<void>(out), out_dtype);
}

void act_backward_cpu(std::uintptr_t g, int g_dtype, std::uintptr_t a, int a_dtype, int64_t n, int act, double slope) {
  py::gil_scoped_release release;
  advface::act_backward_cpu(ptr<void>(g), g_dtype, ptr<const void>(a), a_dtype, n, act, (float)slope);
}

#ifdef ADVFACE_WITH_CUDA
void check(int err, const char* what) {
  if (err != 0) throw std::runtime_error(std::string(what) + ": " + advface::cuda_error_string(err));
}

void clipped_sign_step_cuda(std::uintptr_t z, std::uintptr_t g, std::uintptr_t c, int64_t n, double eps,
                            double alpha, std::uintptr_t stream) {
  check(advface::clipped_sign_step_cuda(reinterpret_cast<float*>(z), reinterpret_cast<const float*>(g),
                                        reinterpret_cast<const float*>(c), n, (float)eps, (float)alpha,
                                        reinterpret_cast<void*>(stream)),
        "clipped_sign_step_cuda");
}

void out_activation_cuda(std::uintptr_t a, int a_dtype, std::uintptr_t y, int64_t n, int out_act,
                         std::uintptr_t stream) {
  check(advface::out_activation_cuda(ptr<const void>(a), a_dtype, ptr<float>(y), n, out_act, ptr<void>(stream)),
        "out_activation_cuda");
}

void l1_sign_out_grad_cuda(std::uintptr_t a, int a_dtype, std::uintptr_t x, std::uintptr_t g, int g_dtype, int64_t n,
                           int out_act, std::uintptr_t stream) {
  check(advface::l1_sign_out_grad_cuda(ptr<const void>(a), a_dtype, ptr<const float>(x), ptr<void>(g), g_dtype, n,
                                       out_act, ptr<void>(stream)),
        "l1_sign_out_grad_cuda");
}

void act_backward_cuda(std::uintptr_t g, int g_dtype, std::uintptr_t a, int a_dtype, int64_t n, int act, double slope,
                       std::uintptr_t stream) {
  check(advface::act_backward_cuda(ptr<void>(g), g_dtype, ptr<const void>(a), a_dtype, n, act, (float)slope,
                                   ptr<void>(stream)),
        "act_backward_cuda");
}
#endif

py::dict build_info() {
  py::dict d;
#ifdef ADVFACE_WITH_CUDA
  d["cuda"] = true;
  d["cuda_archs"] = std::string(ADVFACE_CUDA_ARCHS);
#else
  d["cuda"] = false;
  d["cuda_archs"] = std::string();
#endif
#ifdef ADVFACE_WITH_CUBLASLT
  d["cuda_loop"] = true;
#else
  d["cuda_loop"] = false;
#endif
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "advface_fast compiled kernels (pointer-level API; see advface_fast.ops)";
  m.def("build_info", &build_info, "What the extension was compiled with.");
  m.def("clipped_sign_step_cpu", &clipped_sign_step_cpu, py::arg("z"), py::arg("g"), py::arg("c"), py::arg("n"),
        py::arg("eps"), py::arg("alpha"), py::arg("dtype"),
        "In place: z = clamp(z + alpha*sign(g), c - eps, c + eps) on n contiguous host elements.");
  m.def("out_activation_cpu", &out_activation_cpu, py::arg("a"), py::arg("a_dtype"), py::arg("y"), py::arg("n"),
        py::arg("out_act"), "y = out_act(a) on n contiguous host elements (epilogues.h).");
  m.def("l1_sign_out_grad_cpu", &l1_sign_out_grad_cpu, py::arg("a"), py::arg("a_dtype"), py::arg("x"), py::arg("g"),
        py::arg("g_dtype"), py::arg("n"), py::arg("out_act"),
        "g = sign(out_act(a) - x) * out_act'(out_act(a)) on n contiguous host elements (epilogues.h).");
  m.def("l1_sign_grad_from_output_cpu", &l1_sign_grad_from_output_cpu, py::arg("y"), py::arg("x"), py::arg("g"),
        py::arg("g_dtype"), py::arg("n"), py::arg("out_act"), py::arg("isa") = -1,
        "g = sign(y - x) * out_act'(y) from the output y on n contiguous host elements (epilogues.h); "
        "isa: 0 baseline, 1 AVX2+FMA, 2 AVX-512, -1 the best this CPU has.");
  m.def("row_uniform_cpu", &row_uniform_cpu, py::arg("seed"), py::arg("rows"), py::arg("n_rows"), py::arg("dim"),
        py::arg("out"), py::arg("out_dtype"),
        "Counter-based uniform noise in [-1, 1) (seeding.h) for n_rows int64 row ids into a contiguous "
        "(n_rows, dim) float32 (out_dtype 0) or float64 (2) host buffer.");
  m.def("amx_available", &advface::amx_available,
        "1 when this CPU and OS run AMX-BF16 tiles (cpuid, XCR0, Linux's per-process permission), else 0.");
  m.def(
      "amx_linear_cpu",
      [](std::uintptr_t a, int64_t m, int64_t k, std::uintptr_t b, int64_t n, std::uintptr_t bias, std::uintptr_t out,
         int out_dtype) {
        py::gil_scoped_release release;
        advface::amx_linear_cpu(a, m, k, b, n, bias, out, out_dtype);
      },
      py::arg("a"), py::arg("m"), py::arg("k"), py::arg("b_packed"), py::arg("n"), py::arg("bias"), py::arg("out"),
      py::arg("out_dtype"),
      "out (m x n, float32 if out_dtype 0 else bfloat16) = a (m x k bf16) @ b + bias on AMX tiles (amx_gemm.h); "
      "b packed by advface_fast.ops.amx_pack, bias float32[n] or 0; k, n multiples of 32.");
  m.def("cpu_isa", &advface::cpu_isa, "The vector ISA the CPU kernels dispatch to: 0 baseline, 1 AVX2+FMA, 2 AVX-512.");
  m.def("act_backward_cpu", &act_backward_cpu, py::arg("g"), py::arg("g_dtype"), py::arg("a"), py::arg("a_dtype"),
        py::arg("n"), py::arg("act"), py::arg("slope"), "In place: g = g * act'(a) on n contiguous host elements.");
#ifdef ADVFACE_WITH_CUDA
  m.def("out_activation_cuda", &out_activation_cuda, py::arg("a"), py::arg("a_dtype"), py::arg("y"), py::arg("n"),
        py::arg("out_act"), py::arg("stream"), "out_activation_cpu on device memory, on the given cudaStream_t.");
  m.def("l1_sign_out_grad_cuda", &l1_sign_out_grad_cuda, py::arg("a"), py::arg("a_dtype"), py::arg("x"), py::arg("g"),
        py::arg("g_dtype"), py::arg("n"), py::arg("out_act"), py::arg("stream"),
        "l1_sign_out_grad_cpu on device memory, on the given cudaStream_t.");
  m.def("act_backward_cuda", &act_backward_cuda, py::arg("g"), py::arg("g_dtype"), py::arg("a"), py::arg("a_dtype"),
        py::arg("n"), py::arg("act"), py::arg("slope"), py::arg("stream"),
        "act_backward_cpu on device memory, on the given cudaStream_t.");
#ifdef ADVFACE_WITH_CUBLASLT
  m.def("load_cublaslt", &advface::load_cublaslt, py::arg("path") = std::string(),
        "Open libcublasLt (this path, else the CUDA 13/12 sonames); returns '' or why it failed.");
  py::class_<advface::PgdLoop>(m, "PgdLoop", "The CUDA protection loop of an MLP decoder (pgd_loop.h).")
      .def(py::init([](int device, int batch, std::vector<int> widths, int gemm_dtype, bool tf32, int act, int out_act,
                       double slope, std::vector<uintptr_t> weights, std::vector<uintptr_t> biases,
                       std::vector<uintptr_t> pre, std::vector<uintptr_t> hidden, std::vector<uintptr_t> grad_hidden,
                       uintptr_t z, uintptr_t centre, uintptr_t target, uintptr_t z_in, uintptr_t grad_out,
                       uintptr_t grad_z, uintptr_t image, uintptr_t workspace, size_t workspace_bytes) {
             advface::PgdLoopBuffers b;
             b.weights = std::move(weights);
             b.biases = std::move(biases);
             b.pre = std::move(pre);
             b.hidden = std::move(hidden);
             b.grad_hidden = std::move(grad_hidden);
             b.z = z;
             b.centre = centre;
             b.target = target;
             b.z_in = z_in;
             b.grad_out = grad_out;
             b.grad_z = grad_z;
             b.image = image;
             b.workspace = workspace;
             b.workspace_bytes = workspace_bytes;
             return new advface::PgdLoop(device, batch, std::move(widths), gemm_dtype, tf32, act, out_act,
                                         (float)slope, std::move(b));
           }),
           py::arg("device"), py::arg("batch"), py::arg("widths"), py::arg("gemm_dtype"), py::arg("tf32"),
           py::arg("act"), py::arg("out_act"), py::arg("slope"), py::arg("weights"), py::arg("biases"), py::arg("pre"),
           py::arg("hidden"), py::arg("grad_hidden"), py::arg("z"), py::arg("centre"), py::arg("target"),
           py::arg("z_in"), py::arg("grad_out"), py::arg("grad_z"), py::arg("image"), py::arg("workspace"),
           py::arg("workspace_bytes"))
      .def("run", &advface::PgdLoop::run, py::arg("steps"), py::arg("eps"), py::arg("alpha"), py::arg("stream"),
           py::call_guard<py::gil_scoped_release>())
      .def("decode", &advface::PgdLoop::decode, py::arg("stream"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("captured", &advface::PgdLoop::captured);
#endif
  m.def("clipped_sign_step_cuda", &clipped_sign_step_cuda, py::arg("z"), py::arg("g"), py::arg("c"), py::arg("n"),
        py::arg("eps"), py::arg("alpha"), py::arg("stream"),
        "In place on n contiguous float32 device elements, launched on the given cudaStream_t.");
  m.def("cuda_device_count", []() {
    int count = 0;
    const int err = advface::cuda_device_count(&count);
    if (err != 0) throw std::runtime_error(std::string("cudaGetDeviceCount: ") + advface::cuda_error_string(err));
    return count;
  });
#endif
}
