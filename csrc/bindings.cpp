// pybind11 bindings of advface_fast._C. Raw pointers (as integers), sizes and streams only: no
// libtorch ABI, so the module works with any torch version and with cupy arrays alike.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "clipped_sign_step.h"

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
#ifdef ADVFACE_WITH_CUDA
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
