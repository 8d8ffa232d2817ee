// The CUDA protection loop (pgd_loop.h has the contract and the buffer layout).
//
// GEMMs in cuBLASLt's column-major terms: a row-major (rows x cols) matrix is its column-major
// transpose, so for a layer with weight W (N x K, row-major):
//   forward   pre^T (N x B) = op_T(W as K x N) * (h^T as K x B)        + bias  (epilogue BIAS)
//   backward  g_in^T (K x B) = (W as K x N) * (g_out^T as N x B)
#ifdef ADVFACE_WITH_CUBLASLT
#ifndef ADVFACE_WITH_CUDA
#define ADVFACE_WITH_CUDA 1  // the CUDA declarations of the kernel headers
#endif
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "clipped_sign_step.h"
#include "epilogues.h"
#include "pgd_loop.h"

namespace advface {
namespace {

// ---- libcublasLt, opened at run time ----------------------------------------------------------
struct LtApi {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  void* lib = nullptr;
};
LtApi g_lt;

template <typename F>
bool bind(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

void cuda_check(int err, const char* what) { cuda_check(static_cast<cudaError_t>(err), what); }

void lt_check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLASLt status " + std::to_string(st));
}

cudaDataType_t cuda_type(int dtype) { return dtype == kBFloat16 ? CUDA_R_16BF : CUDA_R_32F; }

// One GEMM: descriptors and the algorithm chosen once, at plan time.
struct Gemm {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  const void* A = nullptr;
  const void* B = nullptr;
  void* D = nullptr;

  void release() {
    if (desc) g_lt.desc_destroy(desc);
    for (auto* l : {a, b, d})
      if (l) g_lt.layout_destroy(l);
    desc = nullptr;
    a = b = d = nullptr;
  }
};

}  // namespace

std::string load_cublaslt(const std::string& path) {
  if (g_lt.lib) return "";
  std::vector<std::string> names;
  if (!path.empty()) names.push_back(path);
  for (const char* n : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) names.emplace_back(n);
  std::string tried;
  for (const auto& n : names) {
    void* lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      tried += (tried.empty() ? "" : "; ") + n + ": " + dlerror();
      continue;
    }
    LtApi api;
    api.lib = lib;
    const bool ok = bind(lib, "cublasLtCreate", api.create) && bind(lib, "cublasLtDestroy", api.destroy) &&
                    bind(lib, "cublasLtMatmulDescCreate", api.desc_create) &&
                    bind(lib, "cublasLtMatmulDescDestroy", api.desc_destroy) &&
                    bind(lib, "cublasLtMatmulDescSetAttribute", api.desc_set) &&
                    bind(lib, "cublasLtMatrixLayoutCreate", api.layout_create) &&
                    bind(lib, "cublasLtMatrixLayoutDestroy", api.layout_destroy) &&
                    bind(lib, "cublasLtMatmulPreferenceCreate", api.pref_create) &&
                    bind(lib, "cublasLtMatmulPreferenceDestroy", api.pref_destroy) &&
                    bind(lib, "cublasLtMatmulPreferenceSetAttribute", api.pref_set) &&
                    bind(lib, "cublasLtMatmulAlgoGetHeuristic", api.heuristic) && bind(lib, "cublasLtMatmul", api.matmul);
    if (!ok) {
      tried += (tried.empty() ? "" : "; ") + n + ": a cuBLASLt function is missing";
      dlclose(lib);
      continue;
    }
    g_lt = api;
    return "";
  }
  return "libcublasLt not found (" + tried + ")";
}

struct PgdLoop::Impl {
  int device, batch, gemm_dtype, act, out_act;
  float slope;
  bool tf32;
  std::vector<int> widths;
  PgdLoopBuffers buf;
  cublasLtHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
  std::vector<Gemm> forward, backward;
  cudaGraphExec_t graph = nullptr;
  int graph_steps = -1, calls = 0;
  float graph_eps = 0.f, graph_alpha = 0.f;

  int layers() const { return (int)widths.size() - 1; }

  Gemm make_gemm(int K, int N, bool fwd, const void* W, const void* bias, const void* in, void* out, int out_dtype) {
    Gemm g;
    const cublasComputeType_t compute =
        (gemm_dtype == kFloat32 && tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    lt_check(g_lt.desc_create(&g.desc, compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = fwd ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    lt_check(g_lt.desc_set(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set TRANSA");
    lt_check(g_lt.desc_set(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set TRANSB");
    if (bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      const cudaDataType_t bias_type = cuda_type(gemm_dtype);
      lt_check(g_lt.desc_set(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "set EPILOGUE");
      lt_check(g_lt.desc_set(g.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), "set BIAS_POINTER");
      lt_check(g_lt.desc_set(g.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type),
               "set BIAS_DATA_TYPE");
    }
    const cudaDataType_t t = cuda_type(gemm_dtype);
    // W is (N x K) row-major = (K x N) column-major, ld K, in both directions
    lt_check(g_lt.layout_create(&g.a, t, K, N, K), "layout A");
    if (fwd) {  // in: (B x K) row-major = (K x B); out: (N x B), ld N
      lt_check(g_lt.layout_create(&g.b, t, K, batch, K), "layout B");
      lt_check(g_lt.layout_create(&g.d, cuda_type(out_dtype), N, batch, N), "layout D");
    } else {  // in: grad (B x N) = (N x B); out: (K x B), ld K
      lt_check(g_lt.layout_create(&g.b, t, N, batch, N), "layout B");
      lt_check(g_lt.layout_create(&g.d, cuda_type(out_dtype), K, batch, K), "layout D");
    }
    cublasLtMatmulPreference_t pref = nullptr;
    lt_check(g_lt.pref_create(&pref), "cublasLtMatmulPreferenceCreate");
    const size_t ws = buf.workspace_bytes;
    lt_check(g_lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), "set MAX_WORKSPACE");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = g_lt.heuristic(handle, g.desc, g.a, g.b, g.d, g.d, pref, 1, &result, &found);
    g_lt.pref_destroy(pref);
    lt_check(st, "cublasLtMatmulAlgoGetHeuristic");
    if (found == 0) throw std::runtime_error("cuBLASLt has no algorithm for a GEMM of this loop");
    g.algo = result.algo;
    g.A = W;
    g.B = in;
    g.D = out;
    return g;
  }

  void gemm(const Gemm& g) {
    const float one = 1.f, zero = 0.f;
    lt_check(g_lt.matmul(handle, g.desc, &one, g.A, g.a, g.B, g.b, &zero, g.D, g.d, g.D, g.d, &g.algo,
                         reinterpret_cast<void*>(buf.workspace), buf.workspace_bytes, stream),
             "cublasLtMatmul");
  }

  void forward_pass() {
    if (gemm_dtype == kBFloat16) {
      cuda_check(to_bf16_cuda(reinterpret_cast<const float*>(buf.z), reinterpret_cast<uint16_t*>(buf.z_in),
                              (int64_t)batch * widths[0], stream),
                 "to_bf16");
    }
    for (int i = 0; i < layers(); ++i) {
      gemm(forward[i]);
      if (i < layers() - 1) {
        cuda_check(act_forward_cuda(reinterpret_cast<const void*>(buf.pre[i]), reinterpret_cast<void*>(buf.hidden[i]),
                                    gemm_dtype, (int64_t)batch * widths[i + 1], act, slope, stream),
                   "act_forward");
      }
    }
  }

  void step(float eps, float alpha) {
    forward_pass();
    const int L = layers();
    const int64_t pixels = (int64_t)batch * widths[L];
    cuda_check(l1_sign_out_grad_cuda(reinterpret_cast<const void*>(buf.pre[L - 1]), gemm_dtype,
                                     reinterpret_cast<const float*>(buf.target), reinterpret_cast<void*>(buf.grad_out),
                                     gemm_dtype, pixels, out_act, stream),
               "l1_sign_out_grad");
    for (int i = L - 1; i >= 1; --i) {
      gemm(backward[i]);
      cuda_check(act_backward_cuda(reinterpret_cast<void*>(buf.grad_hidden[i - 1]), gemm_dtype,
                                   reinterpret_cast<const void*>(buf.pre[i - 1]), gemm_dtype,
                                   (int64_t)batch * widths[i], act, slope, stream),
                 "act_backward");
    }
    gemm(backward[0]);
    cuda_check(clipped_sign_step_cuda(reinterpret_cast<float*>(buf.z), reinterpret_cast<const float*>(buf.grad_z),
                                      reinterpret_cast<const float*>(buf.centre), (int64_t)batch * widths[0], eps,
                                      alpha, stream),
               "clipped_sign_step");
  }
};

PgdLoop::PgdLoop(int device, int batch, std::vector<int> widths, int gemm_dtype, bool tf32, int act, int out_act,
                 float slope, PgdLoopBuffers buffers)
    : impl_(new Impl) {
  if (!g_lt.lib) throw std::runtime_error("libcublasLt is not loaded (call load_cublaslt first)");
  Impl& m = *impl_;
  m.device = device;
  m.batch = batch;
  m.widths = std::move(widths);
  m.gemm_dtype = gemm_dtype;
  m.tf32 = tf32;
  m.act = act;
  m.out_act = out_act;
  m.slope = slope;
  m.buf = std::move(buffers);
  const int L = m.layers();
  if (L < 1 || (int)m.buf.weights.size() != L || (int)m.buf.biases.size() != L || (int)m.buf.pre.size() != L ||
      (int)m.buf.hidden.size() != L - 1 || (int)m.buf.grad_hidden.size() != L - 1)
    throw std::invalid_argument("PgdLoop: buffer lists do not match the number of layers");
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  lt_check(g_lt.create(&m.handle), "cublasLtCreate");
  cuda_check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_check(cudaEventCreateWithFlags(&m.ready, cudaEventDisableTiming), "cudaEventCreate");
  cuda_check(cudaEventCreateWithFlags(&m.done, cudaEventDisableTiming), "cudaEventCreate");
  const void* input = reinterpret_cast<const void*>(gemm_dtype == kBFloat16 ? m.buf.z_in : m.buf.z);
  for (int i = 0; i < L; ++i) {
    const void* in = i == 0 ? input : reinterpret_cast<const void*>(m.buf.hidden[i - 1]);
    m.forward.push_back(m.make_gemm(m.widths[i], m.widths[i + 1], true, reinterpret_cast<const void*>(m.buf.weights[i]),
                                    reinterpret_cast<const void*>(m.buf.biases[i]), in,
                                    reinterpret_cast<void*>(m.buf.pre[i]), gemm_dtype));
  }
  for (int i = 0; i < L; ++i) {
    const void* in = reinterpret_cast<const void*>(i == L - 1 ? m.buf.grad_out : m.buf.grad_hidden[i]);
    void* out = reinterpret_cast<void*>(i == 0 ? m.buf.grad_z : m.buf.grad_hidden[i - 1]);
    m.backward.push_back(m.make_gemm(m.widths[i], m.widths[i + 1], false,
                                     reinterpret_cast<const void*>(m.buf.weights[i]), nullptr, in, out,
                                     i == 0 ? kFloat32 : gemm_dtype));
  }
}

PgdLoop::~PgdLoop() {
  Impl& m = *impl_;
  cudaSetDevice(m.device);
  if (m.graph) cudaGraphExecDestroy(m.graph);
  for (auto& g : m.forward) g.release();
  for (auto& g : m.backward) g.release();
  if (m.ready) cudaEventDestroy(m.ready);
  if (m.done) cudaEventDestroy(m.done);
  if (m.stream) cudaStreamDestroy(m.stream);
  if (m.handle) g_lt.destroy(m.handle);
}

bool PgdLoop::captured() const { return impl_->graph != nullptr; }

void PgdLoop::run(int steps, float eps, float alpha, uintptr_t caller_stream) {
  Impl& m = *impl_;
  cuda_check(cudaSetDevice(m.device), "cudaSetDevice");
  cudaStream_t caller = reinterpret_cast<cudaStream_t>(caller_stream);
  cuda_check(cudaEventRecord(m.ready, caller), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(m.stream, m.ready, 0), "cudaStreamWaitEvent");
  const bool same = m.graph && m.graph_steps == steps && m.graph_eps == eps && m.graph_alpha == alpha;
  if (same) {
    cuda_check(cudaGraphLaunch(m.graph, m.stream), "cudaGraphLaunch");
  } else if (m.calls++ == 0) {  // first call: eager (lazy library initialisation must not happen in a capture)
    for (int s = 0; s < steps; ++s) m.step(eps, alpha);
  } else {
    if (m.graph) {
      cudaGraphExecDestroy(m.graph);
      m.graph = nullptr;
    }
    cudaGraph_t graph = nullptr;
    cuda_check(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      for (int s = 0; s < steps; ++s) m.step(eps, alpha);
    } catch (...) {
      cudaStreamEndCapture(m.stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    cuda_check(cudaStreamEndCapture(m.stream, &graph), "cudaStreamEndCapture");
    const cudaError_t err = cudaGraphInstantiate(&m.graph, graph, 0);
    cudaGraphDestroy(graph);
    cuda_check(err, "cudaGraphInstantiate");
    m.graph_steps = steps;
    m.graph_eps = eps;
    m.graph_alpha = alpha;
    cuda_check(cudaGraphLaunch(m.graph, m.stream), "cudaGraphLaunch");
  }
  cuda_check(cudaEventRecord(m.done, m.stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(caller, m.done, 0), "cudaStreamWaitEvent");
}

void PgdLoop::decode(uintptr_t caller_stream) {
  Impl& m = *impl_;
  cuda_check(cudaSetDevice(m.device), "cudaSetDevice");
  cudaStream_t caller = reinterpret_cast<cudaStream_t>(caller_stream);
  cuda_check(cudaEventRecord(m.ready, caller), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(m.stream, m.ready, 0), "cudaStreamWaitEvent");
  m.forward_pass();
  const int L = m.layers();
  cuda_check(out_activation_cuda(reinterpret_cast<const void*>(m.buf.pre[L - 1]), m.gemm_dtype,
                                 reinterpret_cast<float*>(m.buf.image), (int64_t)m.batch * m.widths[L], m.out_act,
                                 m.stream),
             "out_activation");
  cuda_check(cudaEventRecord(m.done, m.stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(caller, m.done, 0), "cudaStreamWaitEvent");
}

}  // namespace advface
#endif
