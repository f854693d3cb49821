// CPU kernels of the local correlation (cost volume), its backward, and the fused
// correlation + box smoothing + argmax used at inference.
//
// Layout: all tensors stay NCHW (the fused argmax copies the rows it reads into a segmented
// layout, see to_segments). The hot loops are register tiles over (shifts or channels) x
// (contiguous pixels of a row), written with SIMD vector types: 16-byte vectors for the x86-64
// baseline and 32-byte ones in AVX2 clones chosen at run time, so no -march=native is needed.
// Sums never get reassociated (no -ffast-math, no FMA contraction): each value accumulates in a
// fixed order, identical on every path and thread count. The fused argmax (float32) runs
// fused multiply-adds where the CPU has them (AVX-512F, or AVX2 + FMA; correlation_fma.h):
// the same order, one rounding per term instead of two, identical on both instruction sets
// and every thread count (other CPUs run the separate multiply and add). Work is split with
// at::parallel_for over (image, row) units (the argmax: blocks of rows) that each write their
// own output rows only: no atomics, and the only buffers are copies of the rows in use
// (padded, or segmented for the argmax; no per-shift temporaries).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/cpu_features.h"
#include "../mtu_ops.h"

#ifdef MTU_X86
#include <immintrin.h>
#endif

namespace mtu {
namespace {

// The instruction set the kernels use: the best this CPU has, unless mc_use_isa_cpu chose a
// lesser one (the tests run every path on one machine this way).
std::string& isa_choice() {
  static std::string isa = "best";
  return isa;
}

bool use_avx512() {
  return cpu::has_avx512f() && cpu::has_avx2_fma() && isa_choice() == "best";
}
bool use_avx2() { return cpu::has_avx2() && isa_choice() != "baseline"; }
bool use_avx2_fma() { return cpu::has_avx2_fma() && isa_choice() != "baseline"; }

// Copy the C rows (stride hw) starting at `src` into `dst` (C rows of w + 2d), with d zeros
// either side: every shift dx in [-d, d] then reads a full row, the zeros standing for the
// frame's outside exactly as in the reference (which pads and multiplies).
template <typename T>
inline void pad_rows(const T* src, T* dst, int64_t channels, int64_t hw, int64_t w, int64_t d) {
  const int64_t wp = w + 2 * d;
  for (int64_t c = 0; c < channels; ++c) {
    T* row = dst + c * wp;
    std::fill(row, row + d, T(0));
    std::copy(src + c * hw, src + c * hw + w, row + d);
    std::fill(row + d + w, row + wp, T(0));
  }
}

// SIMD vectors of `Bytes` bytes via GCC/Clang vector extensions: explicit register tiles that
// the compiler maps to SSE (16 bytes, the x86-64 baseline) or AVX (32 bytes, in functions
// compiled for AVX2 and picked at run time, so the binary still runs on any x86-64 CPU).
template <typename T, int Bytes>
struct Simd {
  typedef T type __attribute__((vector_size(Bytes)));
  static constexpr int lanes = Bytes / sizeof(T);
  __attribute__((always_inline)) static inline type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  __attribute__((always_inline)) static inline void store(T* p, type v) {
    std::memcpy(p, &v, sizeof(v));
  }
};

// Register tile of the correlation: for NDX consecutive shifts and NV vectors of pixels,
// out_j[x] = sum_c a[c, x] * bp[c, x + j], accumulated in registers over c = 0..C-1. The order
// is fixed (and the same in the scalar tail), so every caller and every ISA path produce
// bit-identical values; `a` is loaded once per channel for all NDX shifts.
template <typename T, int Bytes, int NDX, int NV>
__attribute__((always_inline)) inline void corr_tile(const T* __restrict__ a,
                                                     const T* __restrict__ bp, T* const* out,
                                                     int64_t channels, int64_t hw, int64_t wp,
                                                     int64_t x0) {
  using S = Simd<T, Bytes>;
  typename S::type acc[NDX][NV];
  for (int j = 0; j < NDX; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = typename S::type{};
  for (int64_t c = 0; c < channels; ++c) {
    const T* ac = a + c * hw + x0;
    const T* bc = bp + c * wp + x0;
    typename S::type av[NV];
    for (int v = 0; v < NV; ++v) av[v] = S::load(ac + v * S::lanes);
    for (int j = 0; j < NDX; ++j)
      for (int v = 0; v < NV; ++v) acc[j][v] += av[v] * S::load(bc + j + v * S::lanes);
  }
  for (int j = 0; j < NDX; ++j)
    for (int v = 0; v < NV; ++v) S::store(out[j] + x0 + v * S::lanes, acc[j][v]);
}

// Scalar twin of corr_tile for the pixels left over by the vector tiles.
template <typename T>
__attribute__((always_inline)) inline void corr_tail(const T* a, const T* bp, T* const* out,
                                                     int ndx, int64_t channels, int64_t hw,
                                                     int64_t wp, int64_t x0, int64_t x1) {
  for (int j = 0; j < ndx; ++j)
    for (int64_t x = x0; x < x1; ++x) {
      T acc = T(0);
      for (int64_t c = 0; c < channels; ++c) acc += a[c * hw + x] * bp[c * wp + x + j];
      out[j][x] = acc;
    }
}

// One row of the cost volume for all 2d+1 horizontal shifts at one vertical shift:
// out[dxi][x] = sum_c a[c, x] * f2[c, x + dxi - d] (0 outside), for dxi = 0..2d.
// `a` points at (c=0, row y) of f1 (rows hw apart); `bp` holds the matching f2 rows padded by
// pad_rows; out[dxi] is the destination row of shift dxi (assigned, not accumulated).
template <typename T, int Bytes>
__attribute__((always_inline)) inline void correlate_row_impl(const T* a, const T* bp,
                                                              T* const* out, int64_t channels,
                                                              int64_t hw, int64_t w, int64_t d) {
  constexpr int kDx = 4, kV = 2;  // 4 shifts x 2 vectors: 8 accumulators + 2 operands in registers
  constexpr int kX = Simd<T, Bytes>::lanes * kV;
  const int64_t wp = w + 2 * d, side = 2 * d + 1, wt = w - w % kX;
  int64_t j = 0;
  for (; j + kDx <= side; j += kDx) {
    for (int64_t x0 = 0; x0 < wt; x0 += kX)
      corr_tile<T, Bytes, kDx, kV>(a, bp + j, out + j, channels, hw, wp, x0);
    corr_tail(a, bp + j, out + j, kDx, channels, hw, wp, wt, w);
  }
  for (; j < side; ++j) {
    for (int64_t x0 = 0; x0 < wt; x0 += kX)
      corr_tile<T, Bytes, 1, kV>(a, bp + j, out + j, channels, hw, wp, x0);
    corr_tail(a, bp + j, out + j, 1, channels, hw, wp, wt, w);
  }
}

template <typename T>
void correlate_row_baseline(const T* a, const T* bp, T* const* out, int64_t channels, int64_t hw,
                            int64_t w, int64_t d) {
  correlate_row_impl<T, 16>(a, bp, out, channels, hw, w, d);
}

#ifdef MTU_X86
template <typename T>
__attribute__((target("avx2"))) void correlate_row_avx2(const T* a, const T* bp, T* const* out,
                                                        int64_t channels, int64_t hw, int64_t w,
                                                        int64_t d) {
  correlate_row_impl<T, 32>(a, bp, out, channels, hw, w, d);
}
#endif

template <typename T>
void correlate_row(const T* a, const T* bp, T* const* out, int64_t channels, int64_t hw, int64_t w,
                   int64_t d) {
#ifdef MTU_X86
  if (use_avx2()) return correlate_row_avx2(a, bp, out, channels, hw, w, d);
#endif
  correlate_row_baseline(a, bp, out, channels, hw, w, d);
}

// Register tile of the backward passes: for NC channels and NV vectors of pixels,
// dst[c][x] += sum_j g[j][x] * f[c][x + off[j]] over the 2d+1 horizontal shifts j, accumulated
// in registers (j ascending) and added to dst once; g[j] is loaded once for all NC channels.
template <typename T, int Bytes, int NC, int NV>
__attribute__((always_inline)) inline void grad_tile(const T* const* g, const T* f,
                                                     const int64_t* off, int64_t side, int64_t fs,
                                                     T* dst, int64_t hw, int64_t x0) {
  using S = Simd<T, Bytes>;
  typename S::type acc[NC][NV];
  for (int ci = 0; ci < NC; ++ci)
    for (int v = 0; v < NV; ++v) acc[ci][v] = typename S::type{};
  for (int64_t j = 0; j < side; ++j) {
    typename S::type gv[NV];
    for (int v = 0; v < NV; ++v) gv[v] = S::load(g[j] + x0 + v * S::lanes);
    const T* fj = f + x0 + off[j];
    for (int ci = 0; ci < NC; ++ci)
      for (int v = 0; v < NV; ++v) acc[ci][v] += gv[v] * S::load(fj + ci * fs + v * S::lanes);
  }
  for (int ci = 0; ci < NC; ++ci)
    for (int v = 0; v < NV; ++v) {
      T* p = dst + ci * hw + x0 + v * S::lanes;
      S::store(p, S::load(p) + acc[ci][v]);
    }
}

// One row of a gradient for all channels at one vertical shift:
// dst[c][x] += sum_j g[j][x] * f[c][x + off[j]], c = 0..C-1 (f rows fs apart, dst rows hw apart).
template <typename T, int Bytes>
__attribute__((always_inline)) inline void grad_row_impl(const T* const* g, const T* f,
                                                         const int64_t* off, int64_t side,
                                                         int64_t fs, T* dst, int64_t channels,
                                                         int64_t hw, int64_t w) {
  constexpr int kC = 4, kV = 2;
  constexpr int kX = Simd<T, Bytes>::lanes * kV;
  const int64_t wt = w - w % kX;
  int64_t c = 0;
  for (; c + kC <= channels; c += kC)
    for (int64_t x0 = 0; x0 < wt; x0 += kX)
      grad_tile<T, Bytes, kC, kV>(g, f + c * fs, off, side, fs, dst + c * hw, hw, x0);
  for (; c < channels; ++c)
    for (int64_t x0 = 0; x0 < wt; x0 += kX)
      grad_tile<T, Bytes, 1, kV>(g, f + c * fs, off, side, fs, dst + c * hw, hw, x0);
  for (c = 0; c < channels; ++c)  // pixels left over by the vector tiles
    for (int64_t x = wt; x < w; ++x) {
      T acc = T(0);
      for (int64_t j = 0; j < side; ++j) acc += g[j][x] * f[c * fs + x + off[j]];
      dst[c * hw + x] += acc;
    }
}

template <typename T>
void grad_row_baseline(const T* const* g, const T* f, const int64_t* off, int64_t side,
                       int64_t fs, T* dst, int64_t channels, int64_t hw, int64_t w) {
  grad_row_impl<T, 16>(g, f, off, side, fs, dst, channels, hw, w);
}

#ifdef MTU_X86
template <typename T>
__attribute__((target("avx2"))) void grad_row_avx2(const T* const* g, const T* f,
                                                   const int64_t* off, int64_t side, int64_t fs,
                                                   T* dst, int64_t channels, int64_t hw,
                                                   int64_t w) {
  grad_row_impl<T, 32>(g, f, off, side, fs, dst, channels, hw, w);
}
#endif

template <typename T>
void grad_row(const T* const* g, const T* f, const int64_t* off, int64_t side, int64_t fs,
              T* dst, int64_t channels, int64_t hw, int64_t w) {
#ifdef MTU_X86
  if (use_avx2()) return grad_row_avx2(g, f, off, side, fs, dst, channels, hw, w);
#endif
  grad_row_baseline(g, f, off, side, fs, dst, channels, hw, w);
}

template <typename T>
void correlation_forward_kernel(const T* f1, const T* f2, T* out, int64_t n, int64_t c,
                                int64_t h, int64_t w, int64_t d) {
  const int64_t side = 2 * d + 1, k = side * side, hw = h * w;
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> padded(c * (w + 2 * d));
    std::vector<T*> rows(side);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / h, y = task % h;
      for (int64_t dy = -d; dy <= d; ++dy) {
        if (y + dy < 0 || y + dy >= h) continue;  // rows outside the frame stay zero
        pad_rows(f2 + b * c * hw + (y + dy) * w, padded.data(), c, hw, w, d);
        for (int64_t j = 0; j < side; ++j)
          rows[j] = out + (b * k + (dy + d) * side + j) * hw + y * w;
        correlate_row(f1 + b * c * hw + y * w, padded.data(), rows.data(), c, hw, w, d);
      }
    }
  });
}

// grad_f1[c,y,x] = sum_k g[k,y,x] * f2[c,y+dy,x+dx]          (task: row y of grad_f1)
// grad_f2[c,y,x] = sum_k g[k,y-dy,x-dx] * f1[c,y-dy,x-dx]    (task: row y of grad_f2)
// With f2's row padded by d zeros, grad_f1's term of shift j = dx + d reads g_j[x] and
// f2p[x + j]; with g's and f1's rows padded alike, grad_f2's term reads gp_j[x + 2d - j] and
// f1p[x + 2d - j]. Both are grad_row calls; the zeros of the padding stand for the outside.
template <typename T>
void correlation_backward_kernel(const T* g, const T* f1, const T* f2, T* g1, T* g2, int64_t n,
                                 int64_t c, int64_t h, int64_t w, int64_t d) {
  const int64_t side = 2 * d + 1, k = side * side, hw = h * w, wp = w + 2 * d;
  std::vector<int64_t> off1(side), off2(side);
  for (int64_t j = 0; j < side; ++j) {
    off1[j] = j;
    off2[j] = 2 * d - j;
  }
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> padded(c * wp);
    std::vector<const T*> grows(side);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / h, y = task % h;
      for (int64_t dy = -d; dy <= d; ++dy) {
        if (y + dy < 0 || y + dy >= h) continue;
        pad_rows(f2 + b * c * hw + (y + dy) * w, padded.data(), c, hw, w, d);
        for (int64_t j = 0; j < side; ++j)
          grows[j] = g + (b * k + (dy + d) * side + j) * hw + y * w;
        grad_row(grows.data(), padded.data(), off1.data(), side, wp, g1 + b * c * hw + y * w, c,
                 hw, w);
      }
    }
  });
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> padded(c * wp), gpadded(side * wp);
    std::vector<const T*> grows(side);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / h, y2 = task % h;
      for (int64_t dy = -d; dy <= d; ++dy) {
        const int64_t y = y2 - dy;
        if (y < 0 || y >= h) continue;
        pad_rows(f1 + b * c * hw + y * w, padded.data(), c, hw, w, d);
        // the 2d+1 gradient rows of this dy are hw apart, like channels
        pad_rows(g + (b * k + (dy + d) * side) * hw + y * w, gpadded.data(), side, hw, w, d);
        for (int64_t j = 0; j < side; ++j) grows[j] = gpadded.data() + j * wp + off2[j];
        grad_row(grows.data(), padded.data(), off2.data(), side, wp, g2 + b * c * hw + y2 * w, c,
                 hw, w);
      }
    }
  });
}

// The fused argmax's segmented layout. A row of w pixels is cut into S runs of
// L = ceil(w / S) pixels, run s holding pixels s * L .. s * L + L - 1; position k of the row
// holds pixel s * L + k of every run s, one lane each (S values), then the next channel's
// (positions C * S values apart). A shift by j pixels along the row is then j positions on, so
// the correlation multiplies whole vectors as they lie in memory, and the horizontal box sum
// adds the vectors of the neighbouring positions. The pixels past w (the last runs' tails) are
// zeros in f1, so their correlations and box sums are zeros too. S is a vector of float32 on
// the AVX-512 (16) and AVX2 (8) paths, 16 on the portable one (argmax_segments); the functions
// of the layout take it as their template argument `Segments`.

// The vertical shifts the fused argmax walks down a block's rows together (see
// correlation_argmax_kernel): a row's f1 positions then serve 7 correlation rows, and D = 10's
// 21 shifts make three even groups (a last group of 1 or 2 costs 1.2-1.7x a full one's time).
// Measured at 720p features (docs/benchmarks.md): on an AMD Zen 3 (AVX2, 512 KB of L2 a core),
// 0.91-0.96x the time of 3 and the fastest of 1-7, 11 and 21; on an AMD Zen 5 (1 MB of L2 a
// core), 0.91-0.93x the time of 3 on AVX-512 (8, 9 and 11 alike), 0.96x on its AVX2 path, 0.98x
// on the portable one; this though a group's rings and box sums (~1.5 MB for D = 10) exceed L2
// on both. On rows of 64 pixels 1.00-1.13x the time of 3 (calls of ~2-4 ms); on the path that
// copies its rows 0.97-1.06x.
constexpr int64_t kDyGroup = 7;

// The pixels of one task of the features' normalisation (see normalize_features_kernel)
constexpr int64_t kNormPixels = 128;

template <int Segments>
inline int64_t segment_length(int64_t w) {
  return (w + Segments - 1) / Segments;
}

// dst[(k * channels + c) * Segments + s] = src[c * cstride + s * len + k - halo] for the
// positions k = 0 .. positions - 1, zero where that pixel is outside 0 .. w - 1: the f1 rows
// (halo 0, len positions) and the f2 rows, whose d positions of halo either side make every
// shift -d .. d of a run read its neighbours' pixels (or the zeros of the frame's outside).
template <typename T, int Segments>
void to_segments(const T* src, int64_t cstride, int64_t channels, int64_t w, int64_t len,
                 int64_t halo, int64_t positions, T* __restrict__ dst) {
  for (int64_t k = 0; k < positions; ++k)
    for (int64_t c = 0; c < channels; ++c) {
      const T* row = src + c * cstride;
      T* out = dst + (k * channels + c) * Segments;
      for (int s = 0; s < Segments; ++s) {
        const int64_t x = s * len + k - halo;
        out[s] = x >= 0 && x < w ? row[x] : T(0);
      }
    }
}

// The correlation row of the argmax in the segmented layout, with a separate multiply and
// add (any T; float32 on CPUs without FMA): out[j][k][s] = sum_c a[k][c][s] * b[k + j][c][s]
// for the 2d+1 shifts j, c ascending, as correlation_fma.h does with one rounding a term.
// Register tiles of NDX shifts x one position (NV vectors of `Bytes` bytes: 8 accumulators),
// a channel's a loaded once for the NDX shifts.
template <typename T, int Bytes, int Segments, int NDX>
__attribute__((always_inline)) inline void correlate_segments_tile(const T* a, const T* b,
                                                                   T* const* out,
                                                                   int64_t channels,
                                                                   int64_t pos, int64_t k) {
  using S = Simd<T, Bytes>;
  constexpr int NV = Segments / S::lanes;
  typename S::type acc[NDX][NV];
  for (int j = 0; j < NDX; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = typename S::type{};
  for (int64_t c = 0; c < channels; ++c) {
    typename S::type av[NV];
    for (int v = 0; v < NV; ++v) av[v] = S::load(a + c * Segments + v * S::lanes);
    for (int j = 0; j < NDX; ++j)
      for (int v = 0; v < NV; ++v)
        acc[j][v] += av[v] * S::load(b + j * pos + c * Segments + v * S::lanes);
  }
  for (int j = 0; j < NDX; ++j)
    for (int v = 0; v < NV; ++v) S::store(out[j] + k * Segments + v * S::lanes, acc[j][v]);
}

template <typename T, int Bytes, int Segments>
__attribute__((always_inline)) inline void correlate_segments_impl(const T* a, const T* b,
                                                                   T* const* out,
                                                                   int64_t channels,
                                                                   int64_t len, int64_t d) {
  constexpr int NV = Segments / Simd<T, Bytes>::lanes, NDX = NV < 8 ? 8 / NV : 1;
  const int64_t pos = channels * Segments, side = 2 * d + 1;
  int64_t j = 0;
  for (; j + NDX <= side; j += NDX)
    for (int64_t k = 0; k < len; ++k)
      correlate_segments_tile<T, Bytes, Segments, NDX>(a + k * pos, b + (k + j) * pos, out + j,
                                                       channels, pos, k);
  for (; j < side; ++j)
    for (int64_t k = 0; k < len; ++k)
      correlate_segments_tile<T, Bytes, Segments, 1>(a + k * pos, b + (k + j) * pos, out + j,
                                                     channels, pos, k);
}

template <typename T, int Segments>
void correlate_segments_baseline(const T* a, const T* b, T* const* out, int64_t channels,
                                 int64_t len, int64_t d, const T*, int64_t) {
  correlate_segments_impl<T, 16, Segments>(a, b, out, channels, len, d);
}

#ifdef MTU_X86
template <typename T>
__attribute__((target("avx2"))) void correlate_segments_avx2(const T* a, const T* b,
                                                             T* const* out, int64_t channels,
                                                             int64_t len, int64_t d, const T*,
                                                             int64_t) {
  correlate_segments_impl<T, 32, 8>(a, b, out, channels, len, d);
}

#pragma GCC push_options
#pragma GCC target("avx512f,fma")
namespace corr_avx512 {
// 16 lanes (a position); 7 shifts x 3 positions of accumulators (21 = 3 x 7 shifts for D = 10)
// and 3 positions of a and one of b: 25 of the 32 registers (with 4 positions, as fast on an
// Intel Xeon, one accumulator lived on the stack). Chunks of at most 32 channels: a tile then
// reads 12 lines a channel, <= 24 KB, within a 32 KB L1 (all 52 channels at once: 39 KB;
// the chunk sizes timed are in docs/benchmarks.md)
using Vec = __m512;
using Mask = __mmask16;
constexpr int kSegments = 16;  // (a position is one vector)
constexpr int kLanes = 16, kMaxShifts = 7, kMaxPositions = 3, kMaxChunk = 32;
inline Vec zero() { return _mm512_setzero_ps(); }
inline Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
inline void storeu(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
// (the masked forms with every lane set: the same instructions. The plain intrinsics of GCC
// 12 pass an undefined vector, which it then warns about as uninitialised, some 40 warnings a
// build; the conv engine's `max` does the same)
inline Vec square_root(Vec a) { return _mm512_mask_sqrt_ps(a, 0xFFFF, a); }
inline Vec max(Vec a, Vec b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }
inline Vec set1(float x) { return _mm512_set1_ps(x); }
#include "correlation_fma.h"
#include "normalize_chunk.h"

// The shuffles of transpose16, in their masked forms with every lane set (see square_root)
inline Vec unpacklo(Vec a, Vec b) { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline Vec unpackhi(Vec a, Vec b) { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
inline Vec unpacklo64(Vec a, Vec b) {
  const __m512d x = _mm512_castps_pd(a);
  return _mm512_castpd_ps(_mm512_mask_unpacklo_pd(x, 0xFF, x, _mm512_castps_pd(b)));
}
inline Vec unpackhi64(Vec a, Vec b) {
  const __m512d x = _mm512_castps_pd(a);
  return _mm512_castpd_ps(_mm512_mask_unpackhi_pd(x, 0xFF, x, _mm512_castps_pd(b)));
}
// 128-bit blocks (0, 2) of a and of b (Even) or (1, 3) of each
template <bool Even>
inline Vec shuffle128(Vec a, Vec b) {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Even ? 0x88 : 0xdd);
}

// Transposes 16 vectors of 16 floats in place: r[i][s] becomes r[s][i].
__attribute__((always_inline)) inline void transpose16(Vec (&r)[16]) {
  Vec t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = unpacklo(r[i], r[i + 1]);
    t[i + 1] = unpackhi(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    r[i] = unpacklo64(t[i], t[i + 2]);
    r[i + 1] = unpackhi64(t[i], t[i + 2]);
    r[i + 2] = unpacklo64(t[i + 1], t[i + 3]);
    r[i + 3] = unpackhi64(t[i + 1], t[i + 3]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[i] = shuffle128<true>(r[i], r[i + 4]);
    t[i + 4] = shuffle128<false>(r[i], r[i + 4]);
    t[i + 8] = shuffle128<true>(r[i + 8], r[i + 12]);
    t[i + 12] = shuffle128<false>(r[i + 8], r[i + 12]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    r[i] = shuffle128<true>(t[i], t[i + 8]);
    r[i + 8] = shuffle128<false>(t[i], t[i + 8]);
  }
}

// to_segments (float32) 16 positions at a time: for each channel the 16 runs' next 16 pixels
// (masked loads: zeros outside the row) transposed into 16 positions.
void to_segments(const float* src, int64_t cstride, int64_t channels, int64_t w, int64_t len,
                 int64_t halo, int64_t positions, float* dst) {
  static_assert(kSegments == 16 && kLanes == 16, "a position is one vector");
  for (int64_t k0 = 0; k0 < positions; k0 += 16) {
    const int64_t nk = positions - k0 < 16 ? positions - k0 : 16;
    Mask m[16];  // run s's lanes i whose pixel x = s * len + k0 - halo + i lies in 0 .. w - 1
    int64_t at[16];
    for (int s = 0; s < 16; ++s) {
      at[s] = s * len + k0 - halo;
      const int64_t lo = at[s] < 0 ? (-at[s] < 16 ? -at[s] : 16) : 0;
      const int64_t hi = w - at[s] < 16 ? (w - at[s] > 0 ? w - at[s] : 0) : 16;
      m[s] = hi > lo ? static_cast<Mask>(((1u << hi) - 1u) & ~((1u << lo) - 1u)) : Mask(0);
    }
    for (int64_t c = 0; c < channels; ++c) {
      const float* row = src + c * cstride;
      Vec r[16];
#pragma GCC unroll 16
      for (int s = 0; s < 16; ++s)
        r[s] = m[s] ? _mm512_maskz_loadu_ps(m[s], row + at[s]) : zero();
      transpose16(r);
      for (int64_t i = 0; i < nk; ++i) storeu(dst + ((k0 + i) * channels + c) * kSegments, r[i]);
    }
  }
}
}  // namespace corr_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace corr_avx2 {
// 8 runs a row, a position one vector of 8 lanes; 6 shifts x 2 positions of accumulators + 2
// inputs + a load of 16 registers: 9 loads for 12 multiply-adds. The channels in one chunk: a
// tile reads 2 + 7 half lines a channel, 15 KB at 52 channels, within L1 (on a Zen 3, 96
// channels in two chunks took 1.15x the time; chunks of 26, each position's shifts all at
// once, 1.22x). With 16 runs, a position two vectors, the tiles of 6 shifts x 1 position
// loaded 14 vectors for 12 multiply-adds: the argmax took 1.08-1.19x the time on a Zen 3.
// (docs/benchmarks.md)
using Vec = __m256;
constexpr int kSegments = 8;
constexpr int kLanes = 8, kMaxShifts = 6, kMaxPositions = 2, kMaxChunk = 1 << 30;
inline Vec zero() { return _mm256_setzero_ps(); }
inline Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
inline void storeu(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec square_root(Vec a) { return _mm256_sqrt_ps(a); }
inline Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline Vec set1(float x) { return _mm256_set1_ps(x); }
#include "correlation_fma.h"
#include "normalize_chunk.h"

// Transposes 8 vectors of 8 floats in place: r[i][s] becomes r[s][i].
__attribute__((always_inline)) inline void transpose8(Vec* r) {
  Vec t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// to_segments (float32) 8 positions at a time: for each channel the 8 runs' next 8 pixels
// (masked loads: zeros outside the row) transposed into 8 positions (pure data movement: the
// same values as the scalar form).
void to_segments(const float* src, int64_t cstride, int64_t channels, int64_t w, int64_t len,
                 int64_t halo, int64_t positions, float* dst) {
  static_assert(kSegments == 8 && kLanes == 8, "a position is one vector");
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t k0 = 0; k0 < positions; k0 += 8) {
    const int64_t nk = positions - k0 < 8 ? positions - k0 : 8;
    __m256i m[8];  // run s's lanes i whose pixel x = s * len + k0 - halo + i lies in 0 .. w - 1
    int64_t at[8];
    int full[8];
    for (int s = 0; s < 8; ++s) {
      at[s] = s * len + k0 - halo;
      const __m256i x = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(at[s])), lane);
      m[s] = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), x),
                                 _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(w)),
                                                    x));
      full[s] = at[s] >= 0 && at[s] + 8 <= w ? 1 : (_mm256_testz_si256(m[s], m[s]) ? 0 : -1);
    }
    for (int64_t c = 0; c < channels; ++c) {
      const float* row = src + c * cstride;
      Vec r[8];
#pragma GCC unroll 8
      for (int s = 0; s < 8; ++s)
        r[s] = full[s] > 0 ? loadu(row + at[s])
                           : (full[s] < 0 ? _mm256_maskload_ps(row + at[s], m[s]) : zero());
      transpose8(r);
      for (int64_t i = 0; i < nk; ++i) storeu(dst + ((k0 + i) * channels + c) * kSegments, r[i]);
    }
  }
}
}  // namespace corr_avx2
#pragma GCC pop_options
#endif  // MTU_X86

// The correlation rows of the fused argmax (segmented layout): FMA kernels for float32 where
// the CPU has them.
template <typename T>
using CorrelateRowFn = void (*)(const T*, const T*, T* const*, int64_t, int64_t, int64_t,
                                const T*, int64_t);

// The runs of the argmax's layout on the path this CPU runs (see to_segments): a vector of
// float32 on AVX-512 (16) and AVX2 (8), 16 on the portable path.
int64_t argmax_segments() {
#ifdef MTU_X86
  if (!use_avx512() && use_avx2()) return 8;
#endif
  return 16;
}

// f(std::integral_constant<int, S>{}) for the layout's runs S (8 or 16): the one place a count
// known at run time becomes the template argument of the layout's functions.
template <typename F>
decltype(auto) with_segments(int64_t segments, F&& f) {
  if (segments == 8) return f(std::integral_constant<int, 8>{});
  return f(std::integral_constant<int, 16>{});
}

template <typename T, int Segments>
CorrelateRowFn<T> argmax_correlate_row() {
#ifdef MTU_X86
  if constexpr (Segments == 8) {
    if constexpr (std::is_same_v<T, float>)
      if (use_avx2_fma()) return corr_avx2::correlate_row_fma;
    if (use_avx2()) return correlate_segments_avx2<T>;
  } else if constexpr (std::is_same_v<T, float>) {
    if (use_avx512()) return corr_avx512::correlate_row_fma;
  }
#endif
  return correlate_segments_baseline<T, Segments>;
}

// The rows of the fused argmax into the segmented layout: 16 x 16 transposes for float32 on
// AVX-512, 8 x 8 on AVX2.
template <typename T>
using SegmentsFn = void (*)(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, T*);

template <typename T, int Segments>
SegmentsFn<T> argmax_to_segments() {
#ifdef MTU_X86
  if constexpr (std::is_same_v<T, float> && Segments == 16) {
    if (use_avx512()) return corr_avx512::to_segments;
  } else if constexpr (std::is_same_v<T, float> && Segments == 8) {
    if (use_avx2()) return corr_avx2::to_segments;
  }
#endif
  return to_segments<T, Segments>;
}

// The r halo positions either side of a box-sum row v (len positions, r of halo before and
// after it): position k of run s is pixel s * len + k, which for k < 0 or k >= len lies in a
// neighbouring run (or outside the row: zero). Filled after every vertical update, so that the
// horizontal pass reads neighbours across runs as plain positions.
template <int Segments>
inline void fill_halo(double* v, int64_t len, int64_t r) {
  if (len >= r) {  // (the neighbours' positions: the run before's last, the run after's first)
    for (int64_t k = -r; k < 0; ++k) {
      v[k * Segments] = 0.0;
      for (int s = 1; s < Segments; ++s) v[k * Segments + s] = v[(k + len) * Segments + s - 1];
    }
    for (int64_t k = len; k < len + r; ++k) {
      for (int s = 0; s + 1 < Segments; ++s)
        v[k * Segments + s] = v[(k - len) * Segments + s + 1];
      v[k * Segments + Segments - 1] = 0.0;
    }
    return;
  }
  const int64_t n = len * Segments;  // rows of fewer than r pixels a run
  for (int64_t k = -r; k < len + r; ++k) {
    if (k == 0) k = len;  // (the row itself)
    if (k >= len + r) break;
    for (int s = 0; s < Segments; ++s) {
      const int64_t x = s * len + k;
      v[k * Segments + s] = x >= 0 && x < n ? v[(x % len) * Segments + x / len] : 0.0;
    }
  }
}

// The horizontal pass of one smoothed row (one horizontal shift of one vertical shift), in the
// segmented layout: vp is the row's first halo position (r positions of halo, the len positions
// of the row, r of halo; see fill_halo), s[p] = vp[p] + vp[p + S] + ... + vp[p + 2r S]
// (S = kSegments, the layout's runs: the pixels x - r .. x + r, in that order), and the best
// shift so far (bv, bi) becomes idx where s is strictly larger (or where idx is the first
// shift). The compiler vectorises it for the calling function's ISA.
template <int Segments>
struct HorizontalArgmax {
  static constexpr int kSegments = Segments;
  static inline void halo(double* v, int64_t len, int64_t r) { fill_halo<Segments>(v, len, r); }
  template <int R>
  static inline void run(const double* __restrict__ vp, int32_t idx, int64_t r_any, int64_t len,
                         double* __restrict__ bv, int32_t* __restrict__ bi) {
    const int64_t r = R >= 0 ? R : r_any;
    for (int64_t p = 0; p < len * kSegments; ++p) {
      double s = vp[p];
      if constexpr (R >= 0) {
#pragma GCC unroll 8
        for (int u = 1; u <= 2 * R; ++u) s += vp[p + u * kSegments];
      } else {
        for (int64_t u = 1; u <= 2 * r; ++u) s += vp[p + u * kSegments];
      }
      const bool better = idx == 0 || s > bv[p];
      bv[p] = better ? s : bv[p];
      bi[p] = better ? idx : bi[p];
    }
  }
};

#ifdef MTU_X86
// The same pass in AVX-512, the same sums and comparisons in the same order per pixel, a
// position (16 pixels) at a time, with masked moves (GCC's vectorisation of the loop above
// branches on each comparison's mask, which the data make unpredictable).
struct HorizontalArgmaxAvx512 {
  static constexpr int kSegments = 16;
  // fill_halo's copies a position (two vectors) at a time, each lane moved one place: the
  // scalar copies took about a tenth of the smoothing's time, and the horizontal pass then
  // loaded whole vectors over them, which the scalar stores cannot forward
  __attribute__((target("avx512f"))) static void halo(double* v, int64_t len, int64_t r) {
    static_assert(kSegments == 16, "a position is two vectors of 8 doubles");
    if (len < r) return fill_halo<16>(v, len, r);
    const __m512i z = _mm512_setzero_si512();
    for (int64_t k = -r; k < 0; ++k) {  // lane s: lane s - 1 of the position len on
      const __m512i lo = _mm512_castpd_si512(_mm512_loadu_pd(v + (k + len) * kSegments));
      const __m512i hi = _mm512_castpd_si512(_mm512_loadu_pd(v + (k + len) * kSegments + 8));
      _mm512_storeu_pd(v + k * kSegments, _mm512_castsi512_pd(align<7>(lo, z)));
      _mm512_storeu_pd(v + k * kSegments + 8, _mm512_castsi512_pd(align<7>(hi, lo)));
    }
    for (int64_t k = len; k < len + r; ++k) {  // lane s: lane s + 1 of the position len back
      const __m512i lo = _mm512_castpd_si512(_mm512_loadu_pd(v + (k - len) * kSegments));
      const __m512i hi = _mm512_castpd_si512(_mm512_loadu_pd(v + (k - len) * kSegments + 8));
      _mm512_storeu_pd(v + k * kSegments, _mm512_castsi512_pd(align<1>(hi, lo)));
      _mm512_storeu_pd(v + k * kSegments + 8, _mm512_castsi512_pd(align<1>(z, hi)));
    }
  }
  // valignq: lanes N.. of (a:b) (b the low half); the masked form with every lane set, as in
  // corr_avx512's square_root
  template <int N>
  __attribute__((target("avx512f"), always_inline)) static inline __m512i align(__m512i a,
                                                                               __m512i b) {
    return _mm512_mask_alignr_epi64(a, 0xFF, a, b, N);
  }
  template <int R>
  __attribute__((target("avx512f"))) static void run(const double* vp, int32_t idx,
                                                     int64_t r_any, int64_t len, double* bv,
                                                     int32_t* bi) {
    static_assert(kSegments == 16, "a position is two vectors of 8 doubles");
    const int64_t r = R >= 0 ? R : r_any;
    const __m512i index = _mm512_set1_epi32(idx);
    // (R known: the box's 2R + 1 positions kept in registers, one new position loaded a step)
    constexpr int B = R >= 0 ? 2 * R + 1 : 1;
    __m512d w0[B], w1[B];
    if constexpr (R >= 0) {
#pragma GCC unroll 8
      for (int u = 1; u < B; ++u) {
        w0[u] = _mm512_loadu_pd(vp + (u - 1) * kSegments);
        w1[u] = _mm512_loadu_pd(vp + (u - 1) * kSegments + 8);
      }
    }
    for (int64_t p = 0; p < len * kSegments; p += kSegments) {
      const double* v = vp + p;
      __m512d s0, s1;
      if constexpr (R >= 0) {
#pragma GCC unroll 8
        for (int u = 0; u + 1 < B; ++u) {
          w0[u] = w0[u + 1];
          w1[u] = w1[u + 1];
        }
        w0[B - 1] = _mm512_loadu_pd(v + (B - 1) * kSegments);
        w1[B - 1] = _mm512_loadu_pd(v + (B - 1) * kSegments + 8);
        s0 = w0[0];
        s1 = w1[0];
#pragma GCC unroll 8
        for (int u = 1; u < B; ++u) {
          s0 = _mm512_add_pd(s0, w0[u]);
          s1 = _mm512_add_pd(s1, w1[u]);
        }
      } else {
        s0 = _mm512_loadu_pd(v);
        s1 = _mm512_loadu_pd(v + 8);
        for (int64_t u = 1; u <= 2 * r; ++u) {
          s0 = _mm512_add_pd(s0, _mm512_loadu_pd(v + u * kSegments));
          s1 = _mm512_add_pd(s1, _mm512_loadu_pd(v + 8 + u * kSegments));
        }
      }
      __mmask8 b0 = 0xFF, b1 = 0xFF;
      if (idx != 0) {
        b0 = _mm512_cmp_pd_mask(s0, _mm512_loadu_pd(bv + p), _CMP_GT_OQ);
        b1 = _mm512_cmp_pd_mask(s1, _mm512_loadu_pd(bv + p + 8), _CMP_GT_OQ);
      }
      _mm512_mask_storeu_pd(bv + p, b0, s0);
      _mm512_mask_storeu_pd(bv + p + 8, b1, s1);
      _mm512_mask_storeu_epi32(bi + p, _mm512_kunpackb(b1, b0), index);
    }
  }
};
#endif

#ifdef MTU_X86
// The same pass in AVX2 (4 doubles a vector, 4 a position), branch-free: the best value and
// index are blended and stored whole (GCC's vectorisation of the plain loop tests each
// comparison's mask and branches around the stores, which the data make unpredictable).
struct HorizontalArgmaxAvx2 {
  static constexpr int kSegments = 8;  // (the AVX2 layout's runs)
  // (the scalar copies: whole positions, as on AVX-512, did not pay here; docs/benchmarks.md)
  static inline void halo(double* v, int64_t len, int64_t r) { fill_halo<8>(v, len, r); }
  template <int R>
  __attribute__((target("avx2"))) static void run(const double* vp, int32_t idx, int64_t r_any,
                                                   int64_t len, double* bv, int32_t* bi) {
    static_assert(kSegments == 8, "a position is two vectors of 4 doubles");
    const int64_t r = R >= 0 ? R : r_any;
    const __m256i index = _mm256_set1_epi32(idx);
    const __m256d all = _mm256_castsi256_pd(_mm256_set1_epi32(-1));
    for (int64_t p = 0; p < len * kSegments; p += kSegments) {
      const double* v = vp + p;
      __m256d s[2], m[2];
#pragma GCC unroll 2
      for (int q = 0; q < 2; ++q) s[q] = _mm256_loadu_pd(v + 4 * q);
      if constexpr (R >= 0) {
#pragma GCC unroll 8
        for (int u = 1; u <= 2 * R; ++u)
#pragma GCC unroll 2
          for (int q = 0; q < 2; ++q)
            s[q] = _mm256_add_pd(s[q], _mm256_loadu_pd(v + u * kSegments + 4 * q));
      } else {
        for (int64_t u = 1; u <= 2 * r; ++u)
#pragma GCC unroll 2
          for (int q = 0; q < 2; ++q)
            s[q] = _mm256_add_pd(s[q], _mm256_loadu_pd(v + u * kSegments + 4 * q));
      }
#pragma GCC unroll 2
      for (int q = 0; q < 2; ++q) {
        const __m256d old = _mm256_loadu_pd(bv + p + 4 * q);
        m[q] = idx == 0 ? all : _mm256_cmp_pd(s[q], old, _CMP_GT_OQ);
        _mm256_storeu_pd(bv + p + 4 * q, _mm256_blendv_pd(old, s[q], m[q]));
      }
      // the masks of pixels 0-3 and 4-7 (64 bits each) as 8 masks of 32 bits, in order
      const __m256 t = _mm256_shuffle_ps(_mm256_castpd_ps(m[0]), _mm256_castpd_ps(m[1]),
                                         _MM_SHUFFLE(2, 0, 2, 0));
      const __m256i mi =
          _mm256_permute4x64_epi64(_mm256_castps_si256(t), _MM_SHUFFLE(3, 1, 2, 0));
      int32_t* b = bi + p;
      const __m256i old = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b), _mm256_blendv_epi8(old, index, mi));
    }
  }
};
#endif

// One output row of the fused argmax, for every horizontal shift dxi of one vertical shift:
// the running vertical box sums (vsum, per dxi a row of r halo positions, len positions, r of
// halo) lose the row `drop` and gain the row `add` (either may be null), are summed
// horizontally, and the best shift so far (bv, bi) is kept. All in double (see
// correlation_argmax_kernel). Row by row: the vertical update (and the row's halo), then,
// while the row is in L1, its horizontal sums and comparisons (H; R: the box radius, a
// compile-time constant for the usual sizes, -1 for any).
template <int R, typename T, typename H>
__attribute__((always_inline)) inline void smooth_argmax_row_impl(
    double* vsum, int64_t vstride, const T* const* drop, const T* const* add, int64_t side,
    int64_t dyi, int64_t r_any, int64_t len, double* __restrict__ bv,
    int32_t* __restrict__ bi) {
  const int64_t r = R >= 0 ? R : r_any, n = len * H::kSegments;
  for (int64_t dxi = 0; dxi < side; ++dxi) {
    double* __restrict__ v = vsum + dxi * vstride + r * H::kSegments;
    if (drop != nullptr && add != nullptr) {
      const T* __restrict__ o = drop[dxi];
      const T* __restrict__ a = add[dxi];
      for (int64_t p = 0; p < n; ++p)
        v[p] = (v[p] - static_cast<double>(o[p])) + static_cast<double>(a[p]);
    } else if (drop != nullptr) {
      const T* __restrict__ o = drop[dxi];
      for (int64_t p = 0; p < n; ++p) v[p] -= static_cast<double>(o[p]);
    } else if (add != nullptr) {
      const T* __restrict__ a = add[dxi];
      for (int64_t p = 0; p < n; ++p) v[p] += static_cast<double>(a[p]);
    }
    H::halo(v, len, r);
    // (then its horizontal pass, while the row is in L1)
    H::template run<R>(v - r * H::kSegments, static_cast<int32_t>(dyi * side + dxi), r, len, bv,
                       bi);
  }
}

template <typename T, typename H>
__attribute__((always_inline)) inline void smooth_argmax_row_dispatch(
    double* vsum, int64_t vstride, const T* const* drop, const T* const* add, int64_t side,
    int64_t dyi, int64_t r, int64_t len, double* bv, int32_t* bi) {
  switch (r) {
    case 0:
      return smooth_argmax_row_impl<0, T, H>(vsum, vstride, drop, add, side, dyi, r, len, bv, bi);
    case 1:
      return smooth_argmax_row_impl<1, T, H>(vsum, vstride, drop, add, side, dyi, r, len, bv, bi);
    case 2:
      return smooth_argmax_row_impl<2, T, H>(vsum, vstride, drop, add, side, dyi, r, len, bv, bi);
    default:
      return smooth_argmax_row_impl<-1, T, H>(vsum, vstride, drop, add, side, dyi, r, len, bv, bi);
  }
}

template <typename T>
using SmoothRowFn = void (*)(double*, int64_t, const T* const*, const T* const*, int64_t,
                             int64_t, int64_t, int64_t, double*, int32_t*);

template <typename T, int Segments>
void smooth_argmax_row_baseline(double* vsum, int64_t vstride, const T* const* drop,
                                const T* const* add, int64_t side, int64_t dyi, int64_t r,
                                int64_t len, double* bv, int32_t* bi) {
  smooth_argmax_row_dispatch<T, HorizontalArgmax<Segments>>(vsum, vstride, drop, add, side, dyi,
                                                            r, len, bv, bi);
}

#ifdef MTU_X86
template <typename T>
__attribute__((target("avx2"))) void smooth_argmax_row_avx2(
    double* vsum, int64_t vstride, const T* const* drop, const T* const* add, int64_t side,
    int64_t dyi, int64_t r, int64_t len, double* bv, int32_t* bi) {
  smooth_argmax_row_dispatch<T, HorizontalArgmaxAvx2>(vsum, vstride, drop, add, side, dyi, r,
                                                       len, bv, bi);
}

template <typename T>
__attribute__((target("avx512f"))) void smooth_argmax_row_avx512(
    double* vsum, int64_t vstride, const T* const* drop, const T* const* add, int64_t side,
    int64_t dyi, int64_t r, int64_t len, double* bv, int32_t* bi) {
  smooth_argmax_row_dispatch<T, HorizontalArgmaxAvx512>(vsum, vstride, drop, add, side, dyi, r,
                                                         len, bv, bi);
}
#endif

// (separate adds and compares per lane: the results do not depend on the vector width)
template <typename T, int Segments>
SmoothRowFn<T> smooth_argmax_row() {
#ifdef MTU_X86
  if constexpr (Segments == 16) {
    if (use_avx512()) return smooth_argmax_row_avx512<T>;
  } else if constexpr (Segments == 8) {
    if (use_avx2()) return smooth_argmax_row_avx2<T>;
  }
#endif
  return smooth_argmax_row_baseline<T, Segments>;
}

// The row blocks of the argmax's tasks: enough blocks to keep every thread busy; blocks of >= 8
// rows keep the 2r halo rows that neighbouring blocks both compute a small fraction of the work.
// One block a thread on the matching layout: at::parallel_for gives each thread an equal run of
// tasks, so more blocks only add halo rows (at 720p features two a thread computed 12 of the
// 180 rows twice; one a thread: 0.92-0.99x the time on a Zen 3). Two where the task copies its
// rows into the scratch: with one, 1.28x the time at 720p there (the two threads' copies,
// ~35 MB, exceed its 32 MB L3).
inline int64_t argmax_block_rows(int64_t n, int64_t h, bool matching) {
  const int64_t threads = at::get_num_threads();
  const int64_t want_blocks = std::max<int64_t>(1, ((matching ? 1 : 2) * threads + n - 1) / n);
  return std::max<int64_t>(std::min<int64_t>(h, 8), (h + want_blocks - 1) / want_blocks);
}

// A thread's scratch of the argmax, in elements: the f2 band in the segmented layout (each row
// L + 2d positions of c channels) and the f1 rows of a task's correlation rows (L positions),
// at most block_rows + 2r (+ 2d) rows each, rounded up to whole 64-byte lines.
template <int Segments>
int64_t argmax_band_elems(int64_t c, int64_t w, int64_t d, int64_t r, int64_t block_rows) {
  return (block_rows + 2 * r + 2 * d) * c * (segment_length<Segments>(w) + 2 * d) * Segments;
}
template <typename T, int Segments>
int64_t argmax_scratch_elems(int64_t c, int64_t w, int64_t d, int64_t r, int64_t block_rows) {
  const int64_t line = 64 / sizeof(T);
  const int64_t total = argmax_band_elems<Segments>(c, w, d, r, block_rows) +
                        (block_rows + 2 * r) * c * segment_length<Segments>(w) * Segments;
  return (total + 2 * line - 1) / line * line;  // (+ a line: the slices start on a line)
}

// The first element of p's buffer that starts a 64-byte line (at most a line on).
template <typename T>
T* from_line(T* p) {
  return p + (-reinterpret_cast<uintptr_t>(p) % 64) / sizeof(T);
}

// A buffer of n zeros from a 64-byte line (vectors of a position then never span two lines).
template <typename T>
struct LineBuffer {
  explicit LineBuffer(int64_t n) : data(n + 64 / sizeof(T)) {}
  T* get() { return from_line(data.data()); }
  std::vector<T> data;
};

// Fused argmax. One task = one block of output rows [y0, y1) of one image. The f2 rows the task
// reads are put into the segmented layout once (a band of rows), and so are its f1 rows. For
// each dy the task walks down the rows keeping a ring of the last `smooth` + 1 correlation rows
// for all 2D+1 dx (each correlation row is computed once per task) and running vertical box
// sums of them in double: the sum of <= smooth^2 float values, each added and later subtracted
// once, is then exact in practice, making ties and near-ties independent of summation order and
// of where a block starts. The best shift per pixel is kept; shifts are visited in increasing
// channel index and only a strictly larger value replaces the best, so ties go to the lowest
// index, as torch.argmax does. Every pixel's sums and comparisons are those of the plain row
// layout, term by term; the segmented layout only places them (see to_segments).
//
// scratch: get_num_threads() slices of argmax_scratch_elems elements, one per thread (a buffer
// the caller keeps from call to call: allocated afresh, its ~21 MB a thread at 720p page-fault
// on every call). matching: f1 and f2 are already in the layout (matching_features_kernel, D
// = d), whose rows are read in place: no copies, no scratch.
template <typename T, int Segments>
void correlation_argmax_kernel(const T* f1, const T* f2, int64_t* disp, int64_t n, int64_t c,
                               int64_t h, int64_t w, int64_t d, int64_t smooth, T* scratch,
                               bool matching = false) {
  const int64_t side = 2 * d + 1, hw = h * w;
  const int64_t r = smooth > 1 ? smooth / 2 : 0;
  const int64_t len = segment_length<Segments>(w), row_elems = len * Segments;
  const int64_t f1_row = c * row_elems, f2_row = c * (len + 2 * d) * Segments;
  // the rows in the box and the one leaving it
  const int64_t ring = 2 * r + 2, vstride = (len + 2 * r) * Segments;
  const CorrelateRowFn<T> correlate = argmax_correlate_row<T, Segments>();
  const SmoothRowFn<T> smooth_row = smooth_argmax_row<T, Segments>();
  const SegmentsFn<T> segments = argmax_to_segments<T, Segments>();
  const int64_t block_rows = argmax_block_rows(n, h, matching);
  const int64_t blocks = (h + block_rows - 1) / block_rows;
  const int64_t scratch_elems =
      matching ? 0 : argmax_scratch_elems<T, Segments>(c, w, d, r, block_rows);

  at::parallel_for(0, n * blocks, 1, [&](int64_t begin, int64_t end) {
    // this thread's slice, from a 64-byte line
    T* const band = matching ? nullptr : from_line(scratch + at::get_thread_num() * scratch_elems);
    T* const f1rows =
        matching ? nullptr : band + argmax_band_elems<Segments>(c, w, d, r, block_rows);
    LineBuffer<T> ring_mem(kDyGroup * side * ring * row_elems);
    LineBuffer<double> vsum_mem(kDyGroup * side * vstride);
    LineBuffer<double> best_val_mem(block_rows * row_elems);
    LineBuffer<int32_t> best_idx_mem(block_rows * row_elems);
    double* const best_val = best_val_mem.get();
    int32_t* const best_idx = best_idx_mem.get();
    std::vector<T*> rows(side);
    std::vector<const T*> drop(side), add(side);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, y0 = (task % blocks) * block_rows;
      const int64_t y1 = std::min(h, y0 + block_rows);
      // the f2 rows of every correlation row of the task (rows y0 - r .. y1 - 1 + r, shifted
      // by -d .. d), and the f1 rows of its correlation rows, each in the segmented layout once
      const int64_t band_lo = std::max<int64_t>(0, y0 - r - d);
      const int64_t band_hi = std::min<int64_t>(h, y1 + r + d);
      const int64_t rows_lo = std::max<int64_t>(0, y0 - r);
      const int64_t rows_hi = std::min<int64_t>(h, y1 + r);
      if (!matching) {
        for (int64_t row = band_lo; row < band_hi; ++row)
          segments(f2 + b * c * hw + row * w, hw, c, w, len, d, len + 2 * d,
                   band + (row - band_lo) * f2_row);
        for (int64_t row = rows_lo; row < rows_hi; ++row)
          segments(f1 + b * c * hw + row * w, hw, c, w, len, 0, len,
                   f1rows + (row - rows_lo) * f1_row);
      }
      // f2 row `row` (with its halo) and f1 row `row` in the segmented layout
      auto f2_at = [&](int64_t row) {
        return matching ? f2 + (b * h + row) * f2_row : band + (row - band_lo) * f2_row;
      };
      auto f1_at = [&](int64_t row) {
        return matching ? f1 + (b * h + row) * f2_row + d * c * Segments
                        : f1rows + (row - rows_lo) * f1_row;
      };
      // The vertical shifts kDyGroup at a time, each with its ring and box sums, walking down
      // the rows together: a row's f1 positions then serve kDyGroup correlation rows, and the
      // f2 rows of one row's group serve the next row's (all but one), from L2 rather than L3.
      // Each pixel still meets the shifts in ascending order.
      for (int64_t g0 = 0; g0 < side; g0 += kDyGroup) {
        const int64_t g1 = std::min(side, g0 + kDyGroup);
        auto slot = [&](int64_t dyi, int64_t dxi, int64_t row) {
          return ring_mem.get() + (((dyi - g0) * side + dxi) * ring + row % ring) * row_elems;
        };
        auto vsum = [&](int64_t dyi) { return vsum_mem.get() + (dyi - g0) * side * vstride; };
        // correlation row `row` of shift dyi, all dx, into its ring slot (zero outside the frame)
        auto compute = [&](int64_t dyi, int64_t row) {
          const int64_t dy = dyi - d;
          for (int64_t dxi = 0; dxi < side; ++dxi) rows[dxi] = slot(dyi, dxi, row);
          if (row + dy < 0 || row + dy >= h) {
            for (int64_t dxi = 0; dxi < side; ++dxi)
              std::fill(rows[dxi], rows[dxi] + row_elems, T(0));
            return;
          }
          // the lines the next row reads first from L3, fetched during this row's
          // correlations: its f1 row during the group's first dy, and the f2 row its group
          // adds (the others it shares with this row's group) split over the other dy
          const T* pf = nullptr;
          int64_t pf_lines = 0;
          const int64_t gn = g1 - g0;
          if (row + 1 < rows_hi) {
            if (dyi == g0) {
              pf = f1_at(row + 1);
              pf_lines = f1_row * int64_t(sizeof(T)) / 64;
            } else if (row + 1 + g0 + gn - 1 - d >= band_lo &&
                       row + 1 + g0 + gn - 1 - d < band_hi) {
              const int64_t part = (f2_row + gn - 2) / (gn - 1);
              const int64_t off = (dyi - g0 - 1) * part;
              pf = f2_at(row + 1 + g0 + gn - 1 - d) + off;
              pf_lines = std::min(part, f2_row - off) * int64_t(sizeof(T)) / 64;
            }
          }
          correlate(f1_at(row), f2_at(row + dy), rows.data(), c, len, d, pf, pf_lines);
        };
        // the boxes of row y0: rows first..last inside the frame, summed in order
        const int64_t first = std::max<int64_t>(0, y0 - r);
        const int64_t last = std::min<int64_t>(h - 1, y0 + r);
        std::fill(vsum(g0), vsum(g0) + (g1 - g0) * side * vstride, 0.0);
        for (int64_t row = first; row <= last; ++row)
          for (int64_t dyi = g0; dyi < g1; ++dyi) {
            compute(dyi, row);
            for (int64_t dxi = 0; dxi < side; ++dxi) {
              double* v = vsum(dyi) + dxi * vstride + r * Segments;
              const T* src = slot(dyi, dxi, row);
              for (int64_t p = 0; p < row_elems; ++p) v[p] += static_cast<double>(src[p]);
            }
          }
        for (int64_t y = y0; y < y1; ++y) {
          // one row down: row y + r enters the boxes (if inside), row y - r - 1 leaves them
          const bool enters = y > y0 && y + r <= h - 1, leaves = y > y0 && y - r - 1 >= 0;
          for (int64_t dyi = g0; dyi < g1; ++dyi) {
            if (enters) {
              compute(dyi, y + r);
              for (int64_t dxi = 0; dxi < side; ++dxi) add[dxi] = slot(dyi, dxi, y + r);
            }
            if (leaves)
              for (int64_t dxi = 0; dxi < side; ++dxi) drop[dxi] = slot(dyi, dxi, y - r - 1);
            smooth_row(vsum(dyi), vstride, leaves ? drop.data() : nullptr,
                       enters ? add.data() : nullptr, side, dyi, r, len,
                       best_val + (y - y0) * row_elems, best_idx + (y - y0) * row_elems);
          }
        }
      }
      int64_t* out_dx = disp + b * 2 * hw;
      int64_t* out_dy = out_dx + hw;
      for (int64_t y = y0; y < y1; ++y) {
        const int32_t* best = best_idx + (y - y0) * row_elems;
        for (int64_t s = 0; s < Segments; ++s)  // run s: pixels s * L + k, position k, lane s
          for (int64_t k = 0, x = s * len; k < len && x < w; ++k, ++x) {
            const int32_t idx = best[k * Segments + s];
            out_dx[y * w + x] = idx % side - d;
            out_dy[y * w + x] = idx / side - d;
          }
      }
    }
  });
}

// The features' L2 normalisation over channels, the cosine correlation's inputs at inference:
// out[n, c, p] = x[n, c, p] / max(sqrt(sum_c x[n, c, p]^2), eps). The squares are summed in
// channel order, rounded after each multiply and each add, then come the square root, the
// clamp and one division a value: the steps of normalize_features_reference
// (mtu_toolkit/ops/reference.py, torch's plane-by-plane form) in its order, each rounded as
// IEEE arithmetic does, so every path gives the same bits (torch's own CPU square root is not
// correctly rounded: its values can differ by an ulp). A task is a chunk of kNormPixels pixels
// of one image, whose C plane pieces (26 KB of float32 at 52 channels) are read twice from L1:
// for the sums, then to divide. (Torch's form runs 2C + 2 operations over single planes and a
// division of the whole tensor, each a pass through memory.)
//
// One chunk of `len` <= kNormPixels pixels (plain loops: any T, any CPU, partial chunks)
// (channels xs floats apart in x, os in out)
template <typename T>
void normalize_chunk(const T* x, int64_t xs, T* out, int64_t os, int64_t c, int64_t len,
                     T eps) {
  T norm[kNormPixels];
  for (int64_t p = 0; p < len; ++p) norm[p] = x[p] * x[p];
  for (int64_t ci = 1; ci < c; ++ci) {
    const T* plane = x + ci * xs;
    for (int64_t p = 0; p < len; ++p) norm[p] = norm[p] + plane[p] * plane[p];
  }
  for (int64_t p = 0; p < len; ++p) {
    const T s = std::sqrt(norm[p]);
    norm[p] = s < eps ? eps : s;  // (a NaN stays NaN, as in torch's clamp_min)
  }
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t p = 0; p < len; ++p) out[ci * os + p] = x[ci * xs + p] / norm[p];
}

// The vector form of normalize_chunk for float32 spans (whole vectors of any count; it returns
// how many pixels it did), where this CPU has one
using SpanFn = int64_t (*)(const float*, int64_t, float*, int64_t, int64_t, int64_t, float);
template <typename T>
SpanFn vector_span() {
#ifdef MTU_X86
  if (std::is_same_v<T, float>)
    return use_avx512() ? corr_avx512::normalize_span
                        : (use_avx2_fma() ? corr_avx2::normalize_span : nullptr);
#endif
  return nullptr;
}

// `len` pixels (channels xs floats apart in x, os in out): the whole vectors by `span` where
// there is one, the rest by the portable chunks (the same values either way)
template <typename T>
void normalize_pixels(SpanFn span, const T* x, int64_t xs, T* out, int64_t os, int64_t c,
                      int64_t len, T eps) {
  int64_t p = 0;
  if constexpr (std::is_same_v<T, float>) {
    if (span != nullptr) p = span(x, xs, out, os, c, len, eps);
  }
  for (; p < len; p += kNormPixels)
    normalize_chunk<T>(x + p, xs, out + p, os, c, std::min(kNormPixels, len - p), eps);
}

template <typename T>
void normalize_features_kernel(const T* x, T* out, int64_t n, int64_t c, int64_t hw, T eps) {
  const SpanFn span = vector_span<T>();
  const int64_t chunks = (hw + kNormPixels - 1) / kNormPixels;
  at::parallel_for(0, n * chunks, 8, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, p0 = (task % chunks) * kNormPixels;
      const int64_t len = std::min(kNormPixels, hw - p0), at = b * c * hw + p0;
      normalize_pixels<T>(span, x + at, hw, out + at, hw, c, len, eps);
    }
  });
}

// The motion features as the fused argmax reads them (matching_features): every row of x
// (N, C, H, W) normalised as normalize_features_kernel does (the same steps, so the same bits),
// then put into the segmented layout with d positions of halo, the layout of the argmax's f2
// rows (to_segments; a row is C * (L + 2d) * S values, L = segment_length(w)). Positions
// d .. d + L - 1 of a row are its f1 row, so one such tensor serves as either input of
// correlation_argmax_kernel in its `matching` mode, which then copies nothing. A task is a row
// of one image; it is normalised into a row buffer of the thread (C x W floats, in L2), read
// from there by the transposes.
template <typename T, int Segments>
void matching_features_kernel(const T* x, T* out, int64_t n, int64_t c, int64_t h, int64_t w,
                              int64_t d, T eps) {
  const SpanFn span = vector_span<T>();
  const SegmentsFn<T> segments = argmax_to_segments<T, Segments>();
  const int64_t hw = h * w, len = segment_length<Segments>(w), positions = len + 2 * d;
  const int64_t row_elems = c * positions * Segments;
  at::parallel_for(0, n * h, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> normed(c * w);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / h, y = task % h;
      normalize_pixels<T>(span, x + b * c * hw + y * w, hw, normed.data(), w, c, w, eps);
      segments(normed.data(), w, c, w, len, d, positions, out + task * row_elems);
    }
  });
}

}  // namespace

std::string mc_isa_cpu() {
  if (use_avx512()) return "avx512";
  if (use_avx2_fma()) return "avx2";
  return use_avx2() ? "avx2-nofma" : "baseline";
}

void mc_use_isa_cpu(const std::string& isa) {
  TORCH_CHECK(isa == "best" || isa == "avx2" || isa == "baseline",
              "isa must be \"best\", \"avx2\" or \"baseline\", got \"", isa, "\"");
  TORCH_CHECK(isa != "avx2" || cpu::has_avx2(), "this CPU has no AVX2");
  isa_choice() = isa;
}

at::Tensor correlation_forward_cpu(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp) {
  const int64_t n = f1.size(0), c = f1.size(1), h = f1.size(2), w = f1.size(3);
  const int64_t side = 2 * max_disp + 1;
  auto out = at::zeros({n, side * side, h, w}, f1.options());
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "mtu_correlation_forward_cpu", [&] {
    correlation_forward_kernel<scalar_t>(f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(),
                                         out.data_ptr<scalar_t>(), n, c, h, w, max_disp);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> correlation_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& f1,
                                                            const at::Tensor& f2,
                                                            int64_t max_disp) {
  const int64_t n = f1.size(0), c = f1.size(1), h = f1.size(2), w = f1.size(3);
  auto g1 = at::zeros_like(f1);
  auto g2 = at::zeros_like(f2);
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "mtu_correlation_backward_cpu", [&] {
    correlation_backward_kernel<scalar_t>(grad_out.data_ptr<scalar_t>(), f1.data_ptr<scalar_t>(),
                                          f2.data_ptr<scalar_t>(), g1.data_ptr<scalar_t>(),
                                          g2.data_ptr<scalar_t>(), n, c, h, w, max_disp);
  });
  return {g1, g2};
}

at::Tensor correlation_argmax_cpu(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                                  int64_t smooth, const c10::optional<at::Tensor>& workspace) {
  const int64_t n = f1.size(0), c = f1.size(1), h = f1.size(2), w = f1.size(3);
  auto disp = at::empty({n, 2, h, w}, f1.options().dtype(at::kLong));
  if (disp.numel() == 0) return disp;
  const int64_t r = smooth > 1 ? smooth / 2 : 0;
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "mtu_correlation_argmax_cpu", [&] {
    with_segments(argmax_segments(), [&](auto segments) {
      constexpr int S = decltype(segments)::value;
      const int64_t bytes = at::get_num_threads() * sizeof(scalar_t) *
          argmax_scratch_elems<scalar_t, S>(c, w, max_disp, r, argmax_block_rows(n, h, false));
      at::Tensor scratch =
          workspace ? *workspace : at::empty({0}, f1.options().dtype(at::kByte));
      if (scratch.numel() < bytes) {
        TORCH_CHECK(scratch.storage().resizable(), "workspace holds ", scratch.numel(),
                    " bytes, this call needs ", bytes, ", and its memory cannot grow (not "
                    "allocated by torch): pass torch.empty(0, dtype=torch.uint8)");
        scratch.resize_({bytes});
      }
      correlation_argmax_kernel<scalar_t, S>(
          f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(), n, c, h,
          w, max_disp, smooth, reinterpret_cast<scalar_t*>(scratch.data_ptr<uint8_t>()));
    });
  });
  return disp;
}

int64_t matching_segments() { return argmax_segments(); }

int64_t matching_positions(int64_t w, int64_t max_disp) {
  return with_segments(argmax_segments(), [&](auto segments) {
    return segment_length<decltype(segments)::value>(w) + 2 * max_disp;
  });
}

at::Tensor matching_features_cpu(const at::Tensor& x, int64_t max_disp, double eps,
                                 const at::Tensor& out) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (x.numel() == 0) return out.zero_();  // (W = 0 still has its rows' halo: zeros)
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mtu_matching_features_cpu", [&] {
    with_segments(argmax_segments(), [&](auto segments) {
      matching_features_kernel<scalar_t, decltype(segments)::value>(
          x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, c, h, w, max_disp,
          static_cast<scalar_t>(eps));
    });
  });
  return out;
}

at::Tensor correlation_argmax_matching_cpu(const at::Tensor& m1, const at::Tensor& m2,
                                           int64_t w, int64_t max_disp, int64_t smooth) {
  const int64_t n = m1.size(0), h = m1.size(1), c = m1.size(3);
  auto disp = at::empty({n, 2, h, w}, m1.options().dtype(at::kLong));
  if (disp.numel() == 0) return disp;
  // (the layout's runs are m1's last dimension, which the binding checked against this
  // CPU path's: matching_segments)
  AT_DISPATCH_FLOATING_TYPES(m1.scalar_type(), "mtu_correlation_argmax_matching_cpu", [&] {
    with_segments(m1.size(4), [&](auto segments) {
      correlation_argmax_kernel<scalar_t, decltype(segments)::value>(
          m1.data_ptr<scalar_t>(), m2.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(), n, c, h, w,
          max_disp, smooth, nullptr, true);
    });
  });
  return disp;
}

at::Tensor normalize_features_cpu(const at::Tensor& x, double eps, const at::Tensor& out) {
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mtu_normalize_features_cpu", [&] {
    normalize_features_kernel<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, c,
                                        hw, static_cast<scalar_t>(eps));
  });
  return out;
}

}  // namespace mtu
