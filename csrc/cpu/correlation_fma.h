// The correlation rows of the fused argmax with fused multiply-adds (float32), written once for
// any vector width and included by correlation_cpu.cpp once per instruction set, inside its
// namespace and target pragma (AVX-512F; AVX2 + FMA). The including namespace provides Vec,
// kLanes, kMaxShifts, kMaxPositions, kMaxChunk, zero, loadu, storeu and fmadd, and kSegments
// comes from correlation_cpu.cpp. No std:: call here (see csrc/README.md).
//
// The rows are in the argmax's segmented layout (see to_segments in correlation_cpu.cpp): a
// position k holds the pixels s * L + k of the kSegments runs s of a row, one per lane, then the
// next channel's. A shift by j pixels is then j positions on: whole vectors, loaded where they
// lie (on Intel's cores the lane shifts of a shift within a vector share the port of one of the
// two multiply-add units, and loads across two cache lines halve the load rate).
//
// out[j][k][s] = sum_c a[k][c][s] * b[k + j][c][s] for the 2D+1 shifts j, accumulated over c in
// a fixed order with one rounding per term (FMA), identically on both instruction sets.

constexpr int kVecsPerPosition = kSegments / kLanes;

// Lines to fetch into L1 ahead of their use (the next correlation row's new f1 or f2 lines,
// in L3 until then), spread over a row's tiles: `per` a tile, one a channel (without them
// the next row's first tiles waited on L3: 1.05-1.07x on an Intel Xeon).
struct LineAhead {
  const char* next;
  int64_t left, per;
  int64_t take() {
    const int64_t n = left < per ? left : per;
    next += n * 64;
    left -= n;
    return n;
  }
};

// Register tile: NDX shifts x NK positions from k0 (NK * kVecsPerPosition vectors each), over
// `channels` channels from those `a` and `b` point at. `a` and `b` point at position k0 of
// their rows (b already at shift j0), positions `pos` floats apart; a position of b feeds every
// (shift, position) pair it is the sum of, once loaded. The accumulators start from zero
// (`first`) or from the sums of the channels before these, in `out`.
template <int NDX, int NK>
inline void seg_tile(const float* __restrict__ a, const float* __restrict__ b, float* const* out,
                     int64_t channels, int64_t pos, int64_t k0, bool first, LineAhead& ahead) {
  const char* pf = ahead.next;
  const int64_t npf = ahead.take();
  constexpr int NV = NK * kVecsPerPosition;
  Vec acc[NDX][NV];
  // (zeros, or the sums of the channels before this chunk)
#pragma GCC unroll 16
  for (int j = 0; j < NDX; ++j)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      acc[j][v] = first ? zero() : loadu(out[j] + k0 * kSegments + v * kLanes);
  for (int64_t c = 0; c < channels; ++c) {
    const float* ac = a + c * kSegments;
    const float* bc = b + c * kSegments;
    if (c < npf) _mm_prefetch(pf + c * 64, _MM_HINT_T0);
    Vec av[NV];
#pragma GCC unroll 8
    for (int n = 0; n < NK; ++n)
#pragma GCC unroll 4
      for (int v = 0; v < kVecsPerPosition; ++v)
        av[n * kVecsPerPosition + v] = loadu(ac + n * pos + v * kLanes);
#pragma GCC unroll 16
    for (int m = 0; m < NK + NDX - 1; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < kVecsPerPosition; ++v) {
        Vec bv = loadu(bc + m * pos + v * kLanes);
        // (in a register: GCC otherwise folds the load into each of its multiply-adds, up to
        // NK loads of one vector, and the loads, not the multiply-adds, bound the tile)
        asm("" : "+v"(bv));
#pragma GCC unroll 8
        for (int n = 0; n < NK; ++n) {
          const int j = m - n;  // b's position m is shift j of a's position n
          if (j >= 0 && j < NDX)
            acc[j][n * kVecsPerPosition + v] =
                fmadd(av[n * kVecsPerPosition + v], bv, acc[j][n * kVecsPerPosition + v]);
        }
      }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NDX; ++j)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) storeu(out[j] + k0 * kSegments + v * kLanes, acc[j][v]);
}

// The chunks a row's channels are taken in: at most kMaxChunk channels each, as even as can
// be. Each chunk walks the whole row, a tile storing its sums for the next chunk's tile to
// start from (the same terms in the same order: the same values), so that a tile reads
// (NK + NDX - 1 + NK) x chunk lines rather than x channels, few enough to stay in L1 for the
// next tile along the row, which reads most of them again.
inline int64_t channel_chunks(int64_t channels) {
  // (one chunk at least: a row of no channels is a row of zero sums)
  return channels > kMaxChunk ? (channels + kMaxChunk - 1) / kMaxChunk : 1;
}

// NDX shifts of every position of the row, chunk by chunk: tiles of kMaxPositions, then one
// of the rest.
template <int NDX>
inline void seg_shifts(const float* a, const float* b, float* const* out, int64_t channels,
                       int64_t len, LineAhead& ahead) {
  const int64_t pos = channels * kSegments, chunks = channel_chunks(channels);
  for (int64_t q = 0; q < chunks; ++q) {
    const int64_t c0 = channels * q / chunks, nc = channels * (q + 1) / chunks - c0;
    const float* aq = a + c0 * kSegments;
    const float* bq = b + c0 * kSegments;
    int64_t k0 = 0;
    for (; k0 + kMaxPositions <= len; k0 += kMaxPositions)
      seg_tile<NDX, kMaxPositions>(aq + k0 * pos, bq + k0 * pos, out, nc, pos, k0, q == 0,
                                   ahead);
    switch (len - k0) {
#define MTU_FMA_REST(K)                                                                   \
  case K:                                                                                 \
    if constexpr (K < kMaxPositions)                                                      \
      seg_tile<NDX, K>(aq + k0 * pos, bq + k0 * pos, out, nc, pos, k0, q == 0, ahead);     \
    break;
      MTU_FMA_REST(1)
      MTU_FMA_REST(2)
      MTU_FMA_REST(3)
#undef MTU_FMA_REST
      default:
        break;
    }
  }
}

// The row of all 2d+1 shifts: `a` the f1 row (len positions), `b` the f2 row with d positions
// of halo either side (len + 2d positions), out[j] the row of shift j (len positions), and
// pf_lines lines from pf to fetch on the way (see LineAhead). The shifts kMaxShifts at a
// time: a group's tiles walk the row, its b positions reused by the next tile.
inline void correlate_row_fma(const float* a, const float* b, float* const* out,
                              int64_t channels, int64_t len, int64_t d, const float* pf,
                              int64_t pf_lines) {
  const int64_t side = 2 * d + 1, pos = channels * kSegments;
  const int64_t tiles = ((side + kMaxShifts - 1) / kMaxShifts) *
                        ((len + kMaxPositions - 1) / kMaxPositions) * channel_chunks(channels);
  LineAhead ahead{reinterpret_cast<const char*>(pf), pf_lines, (pf_lines + tiles - 1) / tiles};
  int64_t j = 0;
  for (; j + kMaxShifts <= side; j += kMaxShifts)
    seg_shifts<kMaxShifts>(a, b + j * pos, out + j, channels, len, ahead);
  switch (side - j) {
#define MTU_FMA_REST(K)                                                    \
  case K:                                                                  \
    if constexpr (K < kMaxShifts)                                          \
      seg_shifts<K>(a, b + j * pos, out + j, channels, len, ahead);        \
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
