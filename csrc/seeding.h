// Counter-based uniform noise keyed by (seed, row id, column): SplitMix64 as a hash of a counter
// (advface_fast/engines/seeding.py states the function; row_uniform_ref there is the numpy reference).
//   key_i  = splitmix(splitmix(row_i) ^ seed)
//   u_ij   = (splitmix(splitmix(key_i + j * GOLDEN)) >> 11) * 2^-52 - 1      in [-1, 1)
// Integer arithmetic wraps modulo 2^64; the last line is exact in double, so every build gives
// the reference's bits (and float32 output is that double rounded to nearest even).
#pragma once
#include <cstdint>

namespace advface {

// out: (n_rows, dim) row-major, float32 (out_dtype 0) or float64 (out_dtype 2)
void row_uniform_cpu(uint64_t seed, const int64_t* rows, int64_t n_rows, int64_t dim, void* out, int out_dtype);

}  // namespace advface
