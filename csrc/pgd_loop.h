// The whole protection loop for an MLP decoder on the GPU, driven from C++ (backend "cuda"):
// cuBLASLt GEMMs with the bias epilogue, the elementwise kernels of epilogues.cu, the projected
// sign step of clipped_sign_step.cu; the `steps` of a batch are captured in one CUDA graph on
// the loop's own stream and replayed. Built only when cublasLt.h is found at build time
// (ADVFACE_WITH_CUBLASLT); libcublasLt itself is opened at run time (dlopen), so the module
// imports without it.
//
// All memory is owned by the caller (torch tensors) and passed as raw device addresses; every
// matrix is row-major (rows = batch). With L layers and widths w_0 = D, ..., w_L = P:
//   weights[i]  (w_{i+1}, w_i) in the GEMM dtype       biases[i]  (w_{i+1}) in the GEMM dtype
//   z, centre   (B, D) float32 (z updated in place)     target     (B, P) float32
//   z_in        (B, D) GEMM dtype (bf16 copy of z; unused for float32)
//   pre[i]      (B, w_{i+1}) GEMM dtype: layer i's pre-activation (i = L-1: the image's)
//   hidden[i]   (B, w_{i+1}) GEMM dtype, i < L-1: act(pre[i])
//   grad_out    (B, P) GEMM dtype            grad_hidden[i] (B, w_{i+1}) GEMM dtype, i < L-1
//   grad_z      (B, D) float32               image          (B, P) float32 (decode's output)
#pragma once
#ifdef ADVFACE_WITH_CUBLASLT
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace advface {

// Open libcublasLt (the given path, else the sonames of CUDA 13 and 12); "" on success, else why not.
std::string load_cublaslt(const std::string& path);

struct PgdLoopBuffers {
  std::vector<uintptr_t> weights, biases, pre, hidden, grad_hidden;
  uintptr_t z = 0, centre = 0, target = 0, z_in = 0, grad_out = 0, grad_z = 0, image = 0;
  uintptr_t workspace = 0;
  size_t workspace_bytes = 0;
};

class PgdLoop {
 public:
  // widths: D, hidden..., P. gemm_dtype: kFloat32 or kBFloat16 (epilogues.h); tf32 allows
  // tensor-core tf32 for float32 GEMMs. act / out_act / slope: as in epilogues.h.
  PgdLoop(int device, int batch, std::vector<int> widths, int gemm_dtype, bool tf32, int act, int out_act, float slope,
          PgdLoopBuffers buffers);
  ~PgdLoop();
  PgdLoop(const PgdLoop&) = delete;
  PgdLoop& operator=(const PgdLoop&) = delete;

  // `steps` projected sign steps on z, ordered after the work already queued on `stream` (and
  // before what follows it). The first call runs eagerly; later calls with the same (steps, eps,
  // alpha) replay one CUDA graph.
  void run(int steps, float eps, float alpha, uintptr_t stream);
  // image = out_act(forward(z)) with the loop's own forward arithmetic.
  void decode(uintptr_t stream);
  bool captured() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace advface
#endif
