// bf16 GEMMs on Intel AMX tiles for the CPU bf16 loop's layers: out = A @ B + bias with A (M x K,
// any M; a last partial block of rows runs from a zero-padded copy) bf16 row-major, B (K x N) bf16 pre-packed in tiles, fp32 accumulation, out fp32 or bf16 (RNE).
//
// Why: oneDNN's bf16 matmul costs ~25 us a call whatever its size (64x8x8: 24.7 us through torch
// on 2 cores; 64x256x768: 42 us inside the primitive), and the small decoder's loop makes four per
// step. The plain tile loop below runs 64x256x768 in 40 us on one core and 64x128x256 in 8 us
// (measured with the blocked B layout; a VNNI layout strided by N ran 63 us / 12 us).
//
// Tiles: C in 2x2 blocks of 16x16 fp32 (tmm0-3), A in two 16x32 bf16 tiles (tmm4-5), B in two
// 16 (k pairs) x 16 (n) x 2 tiles (tmm6-7). B is packed once per weight so that each B tile is
// 1 KiB contiguous (row stride 64 bytes): tile (kb, nb) at ((nb * K/32 + kb) * 512) elements,
// element (k, n) at ((k % 32) / 2) * 32 + (n % 16) * 2 + k % 2 within it (see ops.amx_pack).
#include "amx_gemm.h"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

// AMX intrinsics need x86-64 Linux and GCC >= 11 or clang >= 12; elsewhere amx_available() is 0
#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define ADVFACE_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu_parallel.h"
#endif

namespace advface {
#ifdef ADVFACE_AMX
namespace {

struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

bool amx_usable() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!((d >> 22) & 1u) || !((d >> 24) & 1u)) return false;  // AMX-BF16, AMX-TILE
  if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) return false;  // OSXSAVE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;  // the OS saves XTILECFG and XTILEDATA
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !((a >> 5) & 1u)) return false;  // AVX512_BF16 (epilogue)
  // Linux hands out the tile data state per process on request (ARCH_REQ_XCOMP_PERM, XTILEDATA)
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

constexpr int kFp32 = 0, kBf16 = 1;  // out dtype codes (ops.DTYPE_CODES)

// rows [m0, m0 + rows) x columns [n0, n0 + 32) of out, rows <= 32, from the 32 rows of A at a0
// (row stride k; a tail block's rows past `rows` are zeros in a copy)
__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16,avx512vl"))) inline void block32(
    const uint16_t* a0, const uint16_t* b, const float* bias, void* out, int out_dtype, int64_t k, int64_t n,
    int64_t m0, int rows, int64_t n0) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t kblocks = k / 32;
  const uint16_t* b0 = b + (n0 / 16) * kblocks * 512;
  const uint16_t* b1 = b0 + kblocks * 512;
  const uint16_t* a1 = a0 + 16 * k;
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    _tile_loadd(4, a0 + kb * 32, k * 2);
    _tile_loadd(5, a1 + kb * 32, k * 2);
    _tile_loadd(6, b0 + kb * 512, 64);
    _tile_loadd(7, b1 + kb * 512, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float c[32][32];
  _tile_stored(0, &c[0][0], 128);
  _tile_stored(1, &c[0][16], 128);
  _tile_stored(2, &c[16][0], 128);
  _tile_stored(3, &c[16][16], 128);
  const __m512 bias0 = bias ? _mm512_loadu_ps(bias + n0) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_loadu_ps(bias + n0 + 16) : _mm512_setzero_ps();
  for (int r = 0; r < rows; ++r) {
    const __m512 v0 = _mm512_add_ps(_mm512_load_ps(&c[r][0]), bias0);
    const __m512 v1 = _mm512_add_ps(_mm512_load_ps(&c[r][16]), bias1);
    if (out_dtype == kBf16) {
      uint16_t* o = static_cast<uint16_t*>(out) + (m0 + r) * n + n0;
      // round to nearest even, as torch's float -> bfloat16 cast and oneDNN's bf16 output
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), (__m256i)_mm512_cvtneps_pbh(v0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 16), (__m256i)_mm512_cvtneps_pbh(v1));
    } else {
      float* o = static_cast<float*>(out) + (m0 + r) * n + n0;
      _mm512_storeu_ps(o, v0);
      _mm512_storeu_ps(o + 16, v1);
    }
  }
}

__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16,avx512vl"))) void columns(
    const uint16_t* a, const uint16_t* b, const float* bias, void* out, int out_dtype, int64_t m, int64_t k,
    int64_t n, int64_t pair_begin, int64_t pair_end) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;  // every tile 16 rows of 64 bytes: 16 fp32, or 32 bf16 (A), or 16 bf16 pairs (B)
  }
  _tile_loadconfig(&cfg);  // per thread: the tile configuration is thread state
  const int64_t full = m / 32 * 32;
  std::vector<uint16_t> tail;  // the last m % 32 rows of A, zero-padded to 32 (bf16 zeros are 0x0000)
  if (full < m) {
    tail.assign(32 * k, 0);
    std::memcpy(tail.data(), a + full * k, (m - full) * k * sizeof(uint16_t));
  }
  for (int64_t p = pair_begin; p < pair_end; ++p) {
    for (int64_t m0 = 0; m0 < full; m0 += 32) block32(a + m0 * k, b, bias, out, out_dtype, k, n, m0, 32, p * 32);
    if (full < m) block32(tail.data(), b, bias, out, out_dtype, k, n, full, int(m - full), p * 32);
  }
  _tile_release();
}

}  // namespace

int amx_available() {
  static const int ok = amx_usable() ? 1 : 0;
  return ok;
}
#else
int amx_available() { return 0; }
#endif

void amx_linear_cpu(uintptr_t a, int64_t m, int64_t k, uintptr_t b_packed, int64_t n, uintptr_t bias, uintptr_t out,
                    int out_dtype) {
  if (!amx_available()) throw std::runtime_error("amx_linear_cpu: this CPU (or OS, or build) offers no AMX-BF16 tiles");
#ifdef ADVFACE_AMX
  if (m <= 0 || k <= 0 || k % 32 || n <= 0 || n % 32)
    throw std::invalid_argument("amx_linear_cpu: m must be positive, k and n positive multiples of 32");
  if (out_dtype != kFp32 && out_dtype != kBf16) throw std::invalid_argument("amx_linear_cpu: out is float32 or bfloat16");
  const auto* pa = reinterpret_cast<const uint16_t*>(a);
  const auto* pb = reinterpret_cast<const uint16_t*>(b_packed);
  const auto* pbias = reinterpret_cast<const float*>(bias);
  void* po = reinterpret_cast<void*>(out);
  // split the 32-column blocks across threads (each reads all of A, its own part of B)
  parallel_chunks(n / 32, 1, [&](int64_t begin, int64_t end) {
    columns(pa, pb, pbias, po, out_dtype, m, k, n, begin, end);
  });
#else
  (void)a, (void)m, (void)k, (void)b_packed, (void)n, (void)bias, (void)out, (void)out_dtype;
#endif
}

}  // namespace advface
