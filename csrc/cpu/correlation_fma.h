// The correlation row of the fused argmax with fused multiply-adds (float32), written once for
// any vector width and included by correlation_cpu.cpp once per instruction set, inside its
// namespace and target pragma (AVX-512F; AVX2 + FMA). The including namespace provides Vec,
// Mask, kLanes, kMaxShifts, zero, loadu, storeu, load_masked, store_masked, fmadd,
// make_mask(n) (the first n lanes) and, with MTU_FMA_SHUFFLE set to 1, alignr<J>(hi, lo) (the
// vector J lanes on from lo). No std:: call here (see csrc/README.md).
//
// out[j][x] = sum_c a[c, x] * bp[c, x + j] for the 2D+1 shifts j, accumulated over c in a fixed
// order with one rounding per term (FMA), identically on both instruction sets.

// The accumulators of a tile: zeroed, and stored to the NDX shift rows (MASKED: the first
// lanes of `m` of one vector). Inlined, so that the accumulators stay in registers.
template <int NDX, int NV>
__attribute__((always_inline)) inline void zero_tile(Vec (&acc)[NDX][NV]) {
#pragma GCC unroll 16
  for (int j = 0; j < NDX; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[j][v] = zero();
}

template <int NDX, int NV, bool MASKED>
__attribute__((always_inline)) inline void store_tile(const Vec (&acc)[NDX][NV], float* const* out,
                                                      int64_t x0, Mask m) {
#pragma GCC unroll 16
  for (int j = 0; j < NDX; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* p = out[j] + x0 + v * kLanes;
      if (MASKED)
        store_masked(m, p, acc[j][v]);
      else
        storeu(p, acc[j][v]);
    }
}

// Prefetches into L1 a channel's vectors of the next strip (NV vectors on) that this one does
// not read: its a[c] and the bp[c] past this strip's last. A strip's rows come from L3 (the
// task's band of f2 rows and its f1 rows: MBs), one pair of lines per channel, a pattern the
// hardware prefetchers do not follow; loading them on demand left the multiply-adds waiting.
// Issued in every group of shifts: the strip's first group alone was slower with 96 channels.
template <int NV>
__attribute__((always_inline)) inline void prefetch_next_strip(const float* ac, const float* bc) {
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    _mm_prefetch(reinterpret_cast<const char*>(ac + (NV + v) * kLanes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(bc + (NV + 1 + v) * kLanes), _MM_HINT_T0);
  }
}

// Register tile: NDX shifts x NV vectors of pixels from x0 (with MASKED, one vector of the first
// lanes of `m`); a[c] is loaded once for the NDX shifts.
template <int NDX, int NV, bool MASKED>
inline void fma_tile(const float* __restrict__ a, const float* __restrict__ bp,
                     float* const* out, int64_t channels, int64_t hw, int64_t wp, int64_t x0,
                     Mask m) {
  Vec acc[NDX][NV];
  zero_tile(acc);
  for (int64_t c = 0; c < channels; ++c) {
    const float* ac = a + c * hw + x0;
    const float* bc = bp + c * wp + x0;
    Vec av[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      av[v] = MASKED ? load_masked(m, ac + v * kLanes) : loadu(ac + v * kLanes);
    if (!MASKED) prefetch_next_strip<NV>(ac, bc);
#pragma GCC unroll 16
    for (int j = 0; j < NDX; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const float* p = bc + j + v * kLanes;
        acc[j][v] = fmadd(av[v], MASKED ? load_masked(m, p) : loadu(p), acc[j][v]);
      }
  }
  store_tile<NDX, NV, MASKED>(acc, out, x0, m);
}

#if MTU_FMA_SHUFFLE
// The tile of fma_tile (unmasked) with the shifted vectors of bp built from NV + 1 loads by
// lane shifts (alignr<J>: the vector J lanes further on) instead of NDX * NV loads: a vector
// load that is not aligned spans two cache lines, and the loads, not the multiply-adds, bound
// the loaded version (loading every shift: 1.7x slower on a Zen 4 core).
template <int J, int NDX, int NV>
struct ShiftedFma {
  static inline void run(Vec (&acc)[NDX][NV], const Vec* av, const Vec* b) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      Vec s;
      if constexpr (J == 0)
        s = b[v];
      else
        s = alignr<J>(b[v + 1], b[v]);
      acc[J][v] = fmadd(av[v], s, acc[J][v]);
    }
    ShiftedFma<J + 1, NDX, NV>::run(acc, av, b);
  }
};

template <int NDX, int NV>
struct ShiftedFma<NDX, NDX, NV> {
  static inline void run(Vec (&)[NDX][NV], const Vec*, const Vec*) {}
};

template <int NDX, int NV>
inline void fma_tile_shifted(const float* __restrict__ a, const float* __restrict__ bp,
                             float* const* out, int64_t channels, int64_t hw, int64_t wp,
                             int64_t x0) {
  Vec acc[NDX][NV];
  zero_tile(acc);
  for (int64_t c = 0; c < channels; ++c) {
    const float* ac = a + c * hw + x0;
    const float* bc = bp + c * wp + x0;
    Vec av[NV], b[NV + 1];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) av[v] = loadu(ac + v * kLanes);
#pragma GCC unroll 4
    for (int v = 0; v <= NV; ++v) b[v] = loadu(bc + v * kLanes);
    prefetch_next_strip<NV>(ac, bc);
    ShiftedFma<0, NDX, NV>::run(acc, av, b);
  }
  store_tile<NDX, NV, false>(acc, out, x0, Mask{});
}
#endif

// One strip of pixels from x0 (NV vectors; MASKED: the first lanes of one) for NDX shifts.
template <int NDX, int NV, bool MASKED>
inline void strip(const float* a, const float* bp, float* const* out, int64_t channels,
                  int64_t hw, int64_t wp, int64_t x0, Mask m) {
#if MTU_FMA_SHUFFLE
  // (a shifted tile loads up to V floats past its last shift's: the caller leaves that slack)
  if constexpr (!MASKED) {
    fma_tile_shifted<NDX, NV>(a, bp, out, channels, hw, wp, x0);
    return;
  }
#endif
  fma_tile<NDX, NV, MASKED>(a, bp, out, channels, hw, wp, x0, m);
}

// All 2d+1 shifts of one strip, kMaxShifts at a time: the strip's inputs (C x NV vectors of
// a and of bp, ~16 KB for C = 52) stay in L1 from one group of shifts to the next.
template <int NV, bool MASKED>
inline void strip_all_shifts(const float* a, const float* bp, float* const* out,
                             int64_t channels, int64_t hw, int64_t wp, int64_t side, int64_t x0,
                             Mask m) {
  int64_t j = 0;
  for (; j + kMaxShifts <= side; j += kMaxShifts)
    strip<kMaxShifts, NV, MASKED>(a, bp + j, out + j, channels, hw, wp, x0, m);
  switch (side - j) {
#define MTU_FMA_REST(K)                                                      \
  case K:                                                                    \
    if constexpr (K < kMaxShifts)                                            \
      strip<K, NV, MASKED>(a, bp + j, out + j, channels, hw, wp, x0, m);     \
    break;
    MTU_FMA_REST(1)
    MTU_FMA_REST(2)
    MTU_FMA_REST(3)
    MTU_FMA_REST(4)
    MTU_FMA_REST(5)
    MTU_FMA_REST(6)
#undef MTU_FMA_REST
    default:
      break;
  }
}

// The row of all 2d+1 shifts: `a` at (c = 0, row y) of f1 (channels hw apart), `bp` the matching
// f2 row padded by d zeros either side (channels w + 2d apart), out[j] the row of shift j.
// Strips of 2 vectors, then 1, then the masked rest.
inline void correlate_row_fma(const float* a, const float* bp, float* const* out,
                              int64_t channels, int64_t hw, int64_t w, int64_t d) {
  const int64_t side = 2 * d + 1, wp = w + 2 * d;
  int64_t x0 = 0;
  for (; x0 + 2 * kLanes <= w; x0 += 2 * kLanes)
    strip_all_shifts<2, false>(a, bp, out, channels, hw, wp, side, x0, Mask{});
  for (; x0 + kLanes <= w; x0 += kLanes)
    strip_all_shifts<1, false>(a, bp, out, channels, hw, wp, side, x0, Mask{});
  if (x0 < w)
    strip_all_shifts<1, true>(a, bp, out, channels, hw, wp, side, x0, make_mask(w - x0));
}
