// The direct convolution kernels, written once for any vector width. conv_cpu.cpp includes this
// file once per instruction set, inside a namespace that defines the vector traits and under
// that instruction set's target pragma (so no include guard):
//   Vec, Mask, V (lanes), kRegisters (vector registers), kMaxCB (output channels per block:
//   2*kMaxCB accumulators, 2 inputs and a broadcast fit the registers), kDeconvVectors (input
//   vectors a strip of the transposed conv), kDeconvMaxCB (its output channels per block),
//   zero(), loadu(p), storeu(p, v),
//   load_masked(m, p), store_masked(m, p, v), bcast(p), set1(x), fma(a, b, acc),
//   fma_bcast(a, p, acc) (acc + a * *p), kEmbeddedBroadcastVectors (the strips whose
//   weights the kernels instantiated with Embed broadcast by fma_bcast), add(a, b),
//   sub(a, b), mul(a, b), max(a, b),
//   make_mask(start, width) (lanes j with 0 <= start + j < width), is_full(m) (every lane),
//   stream(p, v) (non-temporal store of a whole vector at an aligned p),
//   interleave(a, b, lo, hi) (lo = a0 b0 a1 b1 ..., hi the rest),
//   deinterleave(a, b, even, odd) (even = a0 a2 ... b0 b2 ..., odd = a1 a3 ... b1 b3 ...).
// No std:: call in here: an inline template instantiated under the target pragma could be the
// copy the linker keeps for the other files, which run on any x86-64 CPU.

// Vectors of one packed stride-1 row: at most 8 a strip and the K - 1 <= 4 halo columns.
constexpr int kMaxPackVectors = 9;

// Bias, ReLU, residual, masked store of one output vector at element `off` of channel plane.
// With a.stream, whole aligned vectors bypass the cache (non-temporal stores: the output is
// larger than the cache, and a normal store would first read every line it writes); the
// kernels then end with a store fence.
// Whole vectors (all but a row's last) use plain loads and stores: masked ones cost more
// (AVX2's vmaskmovps store is microcoded on AMD CPUs).
inline void finish(const ConvArgs& a, Vec r, int64_t co, int64_t n, int64_t off, Mask m) {
  const float no_bias = 0.f;
  const bool full = is_full(m);
  r = add(r, bcast(a.bias ? a.bias + co : &no_bias));
  if (a.relu) r = max(r, zero());
  if (a.residual) {
    const float* q = a.residual + n * a.residual_batch_stride + off;
    r = add(r, full ? loadu(q) : load_masked(m, q));
  }
  float* p = a.out + n * a.out_batch_stride + off;
  if (!full)
    store_masked(m, p, r);
  else if (a.stream && (reinterpret_cast<uintptr_t>(p) & (V * sizeof(float) - 1)) == 0)
    stream(p, r);
  else
    storeu(p, r);
}

// A vector of packed input that several multiply-adds use, loaded once into a register. Left
// to itself, GCC folds the load into each multiply-add as a memory operand where a block has
// few output channels and many vectors (out_conv's 3 channels x 7 vectors: every input vector
// loaded 3 times, and at the unaligned taps across two cache lines each time), and the loads,
// not the multiply-adds, then bound the loop.
MTU_ALWAYS_INLINE Vec load_in_register(const float* p) {
  Vec v = loadu(p);
  asm("" : "+v"(v));
  return v;
}

// The end of a kernel's tasks: its non-temporal stores are ordered before what follows.
inline void end_stores(const ConvArgs& a) {
  if (a.stream) _mm_sfence();
}

// A packed sequence's length for `len` floats: whole vectors, so that every store of the packing
// is a plain one (a masked store of each row's last vector cost AVX2 more than the copy: its
// vmaskmovps store is microcoded on AMD CPUs) and every sequence starts on a vector.
constexpr int padded(int len) { return (len + V - 1) / V * V; }

// The packing of LV floats a sequence: NL vectors, of which the last holds REM floats. When
// those are a few halo columns (the K - 1 a strip reads past its own, over S), they are copied
// one by one: deinterleaving a whole group of S more vectors for them cost a third of a
// two-vector strip's packing.
template <int S, int LV>
struct PackShape {
  static constexpr int L = padded(LV), NL = L / V, REM = LV - (NL - 1) * V;
  static constexpr bool kHalo = NL > 1 && REM <= 4;
  static constexpr int NG = kHalo ? NL - 1 : NL;  // groups of S vectors deinterleaved
  // the columns read from cstart on
  static constexpr int kCols = S * NG * V + (kHalo ? S * REM : 0);
};

// pack_row's copy of an input row inside the image (below); kFull: every column read lies
// inside the row too (plain loads, no masks).
template <int S, int LV, bool kFull>
MTU_ALWAYS_INLINE void pack_channels(const ConvArgs& a, int64_t n, int64_t iy, int64_t cstart,
                                     float* dst, int64_t ch_stride) {
  using P = PackShape<S, LV>;
  constexpr int L = P::L, NG = P::NG;
  const int64_t W = a.in_w, HW = a.in_h * W;
  static_assert(P::NL <= kMaxPackVectors, "a packed row holds at most kMaxPackVectors vectors");
  Mask load_mask[kFull ? 1 : S * NG];  // the same for every channel
  if (!kFull)
    for (int l = 0; l < NG * S; ++l) load_mask[l] = make_mask(cstart + l * V, W);
  for (int i = 0; i < a.num_inputs; ++i) {
    const float* src = a.in[i] + n * a.in_batch_stride[i] + iy * W + cstart;
    for (int64_t ci = 0; ci < a.in_channels[i]; ++ci, src += HW, dst += ch_stride) {
#pragma GCC unroll 9
      for (int l = 0; l < NG; ++l) {
        // S vectors of S*V columns deinterleave into V of each sequence
        Vec q[4];
#pragma GCC unroll 4
        for (int m = 0; m < S; ++m)
          q[m] = kFull ? loadu(src + (l * S + m) * V)
                       : load_masked(load_mask[kFull ? 0 : l * S + m], src + (l * S + m) * V);
        if (S == 2) {
          deinterleave(q[0], q[1], q[0], q[1]);
        } else if (S == 4) {  // pairs, then the pairs' evens and odds
          deinterleave(q[0], q[1], q[0], q[1]);
          deinterleave(q[2], q[3], q[2], q[3]);
          const Vec e = q[0], o = q[1];
          deinterleave(e, q[2], q[0], q[2]);
          deinterleave(o, q[3], q[1], q[3]);
        }
#pragma GCC unroll 4
        for (int m = 0; m < S; ++m) storeu(dst + m * L + l * V, q[m]);
      }
      if constexpr (P::kHalo) {
#pragma GCC unroll 4
        for (int m = 0; m < S; ++m)
#pragma GCC unroll 4
          for (int r = 0; r < P::REM; ++r) {
            const int64_t off = S * NG * V + m + S * r;  // from cstart
            dst[m * L + NG * V + r] =
                kFull || (cstart + off >= 0 && cstart + off < W) ? src[off] : 0.f;
          }
      }
    }
  }
}

// Packs input row iy (zeros outside the image) of every input channel (the inputs in order),
// channel c at dst + c * ch_stride, as S (1, 2 or 4) sequences of LV floats, each padded to
// L = padded(LV), one after the other: sequence s holds columns cstart + s + S*j, j < LV.
// At most S*L floats a channel are written (the padding's values are never read), so rows can
// be packed into any slot. S and LV are template arguments, and the function is inlined into each
// kernel: with them known, q[] and the masks live in registers and the deinterleave is chosen at
// compile time (one out-of-line copy for every S and L kept them in memory and made packing cost
// twice a stride-2 layer's multiply-adds).
template <int S, int LV>
MTU_ALWAYS_INLINE void pack_row(const ConvArgs& a, int64_t n, int64_t iy, int64_t cstart,
                                float* dst, int64_t ch_stride) {
  using P = PackShape<S, LV>;
  if (iy < 0 || iy >= a.in_h) {  // zero padding
    const int64_t cin = input_channels(a);
    for (int64_t ci = 0; ci < cin; ++ci, dst += ch_stride)
      for (int m = 0; m < S; ++m)
        for (int l = 0; l < P::NL; ++l) storeu(dst + m * P::L + l * V, zero());
    return;
  }
  if (cstart >= 0 && cstart + P::kCols <= a.in_w)
    pack_channels<S, LV, true>(a, n, iy, cstart, dst, ch_stride);
  else
    pack_channels<S, LV, false>(a, n, iy, cstart, dst, ch_stride);
}

// Packs the R input rows rows[] of every input channel, one after the other (R * S * L floats
// a channel, L = padded(LV)).
template <int R, int S, int LV>
MTU_ALWAYS_INLINE void pack_rows(const ConvArgs& a, int64_t n, const int64_t* rows,
                                 int64_t cstart, float* dst) {
  constexpr int L = padded(LV);
  for (int rr = 0; rr < R; ++rr)
    pack_row<S, LV>(a, n, rows[rr], cstart, dst + rr * S * L, R * S * L);
}

// A strip's ring of K packed input rows of every channel (channel ci's row iy at
// buf + (ci * K + iy mod K) * S * L, L = padded(LV)), walked down the rows: advance() to the rows
// top .. top + K - 1 of sample n packs only those the ring does not hold yet (S a step down,
// all K after a jump) and gives each row's offset in slot[K]. (The kernels fetch the next
// step's rows themselves, spread over their products: LineSpread.)
struct Ring {
  int64_t n = -1, last = 0;  // holds rows last - K + 1 .. last of sample n
  template <int K, int S, int LV>
  MTU_ALWAYS_INLINE void advance(const ConvArgs& a, int64_t sample, int64_t top, int64_t cstart,
                                 float* buf, int64_t* slot) {
    const int64_t chunk = S * padded(LV);
    const int64_t first = sample == n && last >= top ? last + 1 : top;
    for (int64_t iy = first; iy < top + K; ++iy)
      pack_row<S, LV>(a, sample, iy, cstart, buf + ((iy % K) + K) % K * chunk, K * chunk);
    n = sample;
    last = top + K - 1;
    for (int i = 0; i < K; ++i) slot[i] = ((top + i) % K + K) % K * chunk;
  }
};

// Vectors per strip for CB output channels a block: (registers - 1) / (CB + 1), 1 to 8. The
// loops over a strip's NV vectors carry `#pragma GCC unroll 8`, so that they unroll whole for
// every NV: unrolled by 4, the 5 to 7 vectors of the few-output-channel blocks (out_conv's 3
// channels: 7) kept their accumulators and inputs in memory, loaded and stored at every
// multiply-add.
constexpr int strip_vectors(int cb) {
  const int nv = (kRegisters - 1) / (cb + 1);
  return nv < 1 ? 1 : (nv > 8 ? 8 : nv);
}
constexpr int kStripVectors[14] = {
    0, strip_vectors(1), strip_vectors(2), strip_vectors(3), strip_vectors(4), strip_vectors(5),
    strip_vectors(6), strip_vectors(7), strip_vectors(8), strip_vectors(9), strip_vectors(10),
    strip_vectors(11), strip_vectors(12), strip_vectors(13)};

// Calls run.template operator()<NV>(x0) for the strips of NV vectors across `width` columns
// (or tiles), x0 the first of each; a last strip of one vector runs with NV = 1 where strips
// hold two (a strip of two would compute a vector of nothing: a sixth of the products of the
// 80-tile rows of the 320-wide layers at 720p). NV is a template argument of run, which keeps
// its accumulators in registers.
template <int NV, typename Run>
MTU_ALWAYS_INLINE void for_each_strip(int64_t width, Run&& run) {
  for (int64_t x0 = 0; x0 < width; x0 += NV * V) {
    if constexpr (NV == 2) {
      if (width - x0 <= V) {
        run.template operator()<1>(x0);
        continue;
      }
    }
    run.template operator()<NV>(x0);
  }
}

// Calls f.template operator()<C>() for a block of CB output channels of which c >= 1 are real
// (c >= CB: all): C == min(c, CB) where blocks are small enough to pad noticeably (AVX2: 6
// channels a block pad 26 to 30), else C == CB: the padded channels' products are then
// computed and dropped, as AVX-512's blocks of up to 13 rarely pad the network's channel
// counts and each C is another copy of the products' code.
template <int CB, typename F>
MTU_ALWAYS_INLINE void with_channels(int64_t c, F&& f) {
  if constexpr (CB > 1 && kRegisters <= 16) {
    if (c < CB) {
      with_channels<CB - 1>(c, f);
      return;
    }
  }
  f.template operator()<CB>();
}

// Convolution, K x K taps, stride S, padding a.pad: a task is a range of output rows. Per
// strip of NV*V output pixels, down the rows: the strip's K input rows of every channel are
// kept packed in a ring (~40 KB: it stays in L1; read in place, the rows lie a plane apart,
// alias in L1 and are too many streams for the prefetchers), and per block of CB output
// channels CB x NV vectors accumulate in registers, each packed vector loaded once per tap and
// used for CB multiply-adds.
template <int CB, int K, int S, int NV, bool Embed>
void conv_strip(const ConvArgs& a, int64_t begin, int64_t end, int64_t x0, float* buf,
                PhaseTimer& timer) {
  constexpr int LV = NV * V + (K - 1) / S, L = padded(LV), CHUNK = S * L;
  const int64_t cin = input_channels(a);
  const int64_t OH = a.out_h, OW = a.out_w;
  // Down the rows of the task: buf is a ring of the K packed input rows of every channel
  // (channel ci's row iy at slot iy mod K), so moving down one output row packs only its S new
  // input rows: each input row is packed once a strip, not K times
  const int64_t cstart = S * x0 - a.pad;
  Mask mask[NV];
  for (int v = 0; v < NV; ++v) mask[v] = make_mask(x0 + v * V, OW);
  Ring ring;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t n = t / OH, y = t % OH, top = S * y - a.pad;
    int64_t slot[K];
    ring.advance<K, S, LV>(a, n, top, cstart, buf, slot);
    // the next output row's S new input rows, a few lines at each channel's products below:
    // the columns its packing reads (not the CHUNK floats it writes: the lines past them are
    // not read in this strip, and each fetch holds a miss buffer the products' loads wait for)
    LineSpread next_rows;
    if (t + 1 < end && (t + 1) / OH == n)
      spread_input_rows(next_rows, a, n, top + K, S, cstart, cstart + PackShape<S, LV>::kCols);
    next_rows.start(a.cout_blocks * cin);
    timer.lap(kPack);
    for (int64_t g = 0; g < a.cout_blocks; ++g) {
      const float* w = a.weight + g * cin * K * K * CB;
      // the block's residual and output lines, spread over its products
      LineSpread outputs;
      spread_outputs(outputs, a, n, g * CB, CB, y, 1, x0, x0 + NV * V);
      outputs.start(cin);
      // the block's C real channels (C < CB only in a padded last block)
      const auto block = [&]<int C>() {
        Vec acc[C][NV];
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c)
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[c][v] = zero();
        const float* channel = buf;
        for (int64_t ci = 0; ci < cin; ++ci, channel += K * CHUNK) {
          next_rows.step();
          outputs.step();
          // (one base register a kernel row, its taps and vectors at constant offsets from it:
          // GCC otherwise made each row, tap and vector's address its own induction variable,
          // more than the registers hold, reloaded from the stack before each load)
          const float* rows[K];
#pragma GCC unroll 8
          for (int ky = 0; ky < K; ++ky) {
            rows[ky] = channel + slot[ky];
            asm("" : "+r"(rows[ky]));
          }
#pragma GCC unroll 8
          for (int ky = 0; ky < K; ++ky, w += K * CB) {
            const float* row = rows[ky];
#pragma GCC unroll 8
            for (int kx = 0; kx < K; ++kx) {
              const float* src = row + (kx % S) * L + kx / S;
              Vec in[NV];
#pragma GCC unroll 8
              for (int v = 0; v < NV; ++v) in[v] = load_in_register(src + v * V);
              // (strips of kEmbeddedBroadcastVectors, where Embed: each weight broadcast by
              // every multiply-add's own load; the same arithmetic, the same bits. Which of
              // the two runs faster depends on the CPU: see embedded_broadcasts in
              // conv_cpu.cpp. Written out here
              // and in winograd_strip: as one helper taking the accumulators by pointer, it
              // moved GCC's register allocation in every kernel, AVX2 included, and out_conv
              // by F(4x4) ran 1.04-1.09x slower)
              if constexpr (Embed && NV == kEmbeddedBroadcastVectors) {
#pragma GCC unroll 16
                for (int c = 0; c < C; ++c)
#pragma GCC unroll 8
                  for (int v = 0; v < NV; ++v)
                    acc[c][v] = fma_bcast(in[v], w + kx * CB + c, acc[c][v]);
              } else {
#pragma GCC unroll 16
                for (int c = 0; c < C; ++c) {
                  const Vec b = bcast(w + kx * CB + c);
#pragma GCC unroll 8
                  for (int v = 0; v < NV; ++v) acc[c][v] = fma(in[v], b, acc[c][v]);
                }
              }
            }
          }
        }
        timer.lap(kProducts);
        // unrolled, so that acc stays in registers (indexed, it would live in memory)
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) {
          const int64_t co = g * CB + c;
          if (co >= a.cout) continue;  // (AVX-512: C == CB in a padded block)
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v)
            finish(a, acc[c][v], co, n, (co * OH + y) * OW + x0 + v * V, mask[v]);
        }
      };
      with_channels<CB>(a.cout - g * CB, block);
      timer.lap(kEpilogue);
    }
  }
}

template <int CB, int K, int S, bool Embed>
void conv_rows(const ConvArgs& a, int64_t begin, int64_t end, float* buf) {
  // NV vectors a strip: as many as the registers hold next to the CB*NV accumulators and a
  // broadcast (2 for CB = 13 with AVX-512; more for the few-channel layers, whose broadcasts
  // would otherwise feed too few multiply-adds)
  PhaseTimer timer;
  for_each_strip<kStripVectors[CB]>(a.out_w, [&]<int NV>(int64_t x0) {
    conv_strip<CB, K, S, NV, Embed>(a, begin, end, x0, buf, timer);
  });
  end_stores(a);
}

// The input row r (0 or 1) that output row oy of the 4x4 stride-2 transposed conv takes
constexpr int64_t deconv_input_row(int64_t oy, int r) {
  return r == 0 ? oy >> 1 : ((oy & 1) ? (oy >> 1) + 1 : (oy >> 1) - 1);
}

// Transposed convolution 4x4, stride 2, padding 1 (exact x2 upsampling). Output row
// oy = 2i + py takes input rows i and i - 1 (py = 0: kernel rows 1, 3) or i and i + 1 (py = 1:
// rows 2, 0); output column 2j takes input columns j (kernel column 1) and j - 1 (3), column
// 2j + 1 takes j (2) and j + 1 (0). So a strip of NV*V input columns gives twice as many output
// pixels: two accumulator sets (even, odd columns) fed by three shifted loads of each packed
// row, interleaved at the store. Weights packed as (G, 2 [py], Cin, 2 [row tap], 4 [kx], CB).
template <int CB>
void deconv_rows(const ConvArgs& a, int64_t begin, int64_t end, float* buf) {
  // kDeconvVectors input vectors a strip where the registers hold 2 x CB x that many
  // accumulators beside 2 shifts of each input and a broadcast, else one (AVX-512: a block of
  // up to kDeconvMaxCB channels, 26 in two blocks of 13 rather than five of 6, of which 4
  // padding)
  constexpr int NV = 2 * CB * kDeconvVectors + 2 * kDeconvVectors + 1 <= kRegisters
                         ? kDeconvVectors : 1;
  constexpr int LV = NV * V + 2, L = padded(LV);
  const int64_t cin = input_channels(a);
  const int64_t OH = a.out_h, OW = a.out_w;
  PhaseTimer timer;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t n = t / OH, oy = t % OH, py = oy & 1;
    const int64_t rows[2] = {deconv_input_row(oy, 0), deconv_input_row(oy, 1)};
    for (int64_t j0 = 0; j0 < a.in_w; j0 += NV * V) {
      pack_rows<2, 1, LV>(a, n, rows, j0 - 1, buf);
      // the next strip's (or the next output row's first strip's) two input rows and its
      // residual and output lines, a few between this strip's products
      LineSpread next;
      const bool wraps = j0 + NV * V >= a.in_w;
      const int64_t nt = wraps ? t + 1 : t, nj0 = wraps ? 0 : j0 + NV * V;
      if (nt < end) {
        const int64_t nn = nt / OH, noy = nt % OH;
        for (int r = 0; r < 2; ++r)
          spread_input_rows(next, a, nn, deconv_input_row(noy, r), 1, nj0 - 1, nj0 - 1 + LV);
        spread_outputs(next, a, nn, 0, a.cout, noy, 1, 2 * nj0, 2 * nj0 + 2 * NV * V);
      }
      next.start(a.cout_blocks * cin * 2);
      timer.lap(kPack);
      Mask mask[2 * NV];
      for (int m = 0; m < 2 * NV; ++m) mask[m] = make_mask(2 * j0 + m * V, OW);
      for (int64_t g = 0; g < a.cout_blocks; ++g) {
        const float* w = a.weight + (g * 2 + py) * cin * 2 * 4 * CB;
        Vec even[CB][NV], odd[CB][NV];
#pragma GCC unroll 16
        for (int c = 0; c < CB; ++c)
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) even[c][v] = odd[c][v] = zero();
        const float* row = buf;
        for (int64_t r = 0; r < cin * 2; ++r, row += L, w += 4 * CB) {
          next.step();
          // the odd columns (shifts 2 and 1), then the even ones (1 and 0): two shifts live at
          // a time, not three. With three, AVX2's 2 x 6 accumulators, 3 shifts and a broadcast
          // took all 16 registers and GCC kept three accumulators in memory, a store and a
          // reload a row each (each accumulator's multiply-adds are in the same order either
          // way: the results are the same bits)
          Vec mid[NV], side[NV];
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) {
            mid[v] = loadu(row + v * V + 1);
            side[v] = loadu(row + v * V + 2);
          }
#pragma GCC unroll 16
          for (int c = 0; c < CB; ++c) {
            const Vec w0 = bcast(w + c), w2 = bcast(w + 2 * CB + c);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) odd[c][v] = fma(mid[v], w2, fma(side[v], w0, odd[c][v]));
          }
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) side[v] = loadu(row + v * V);
#pragma GCC unroll 16
          for (int c = 0; c < CB; ++c) {
            const Vec w1 = bcast(w + CB + c), w3 = bcast(w + 3 * CB + c);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) even[c][v] = fma(side[v], w3, fma(mid[v], w1, even[c][v]));
          }
        }
        timer.lap(kProducts);
#pragma GCC unroll 16
        for (int c = 0; c < CB; ++c) {
          const int64_t co = g * CB + c;
          if (co >= a.cout) continue;
          const int64_t off = (co * OH + oy) * OW + 2 * j0;
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) {
            Vec lo, hi;
            interleave(even[c][v], odd[c][v], lo, hi);
            finish(a, lo, co, n, off + 2 * v * V, mask[2 * v]);
            finish(a, hi, co, n, off + (2 * v + 1) * V, mask[2 * v + 1]);
          }
        }
        timer.lap(kEpilogue);
      }
    }
  }
  end_stores(a);
}

// Winograd F(M x M, R x R) transforms in one dimension (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016) over N = M + R - 1 points: 0, 1, -1 (N = 4), then 2, -2
// (N = 6), then 1/2, -1/2 (N = 8), and infinity. WinogradInput<N>::input(x, r) is r = B^T x;
// WinogradOutput<M, N>::output(m, y) is y = A^T m (M outputs). B^T depends on the points only,
// so F(2, 5) and F(4, 3) share it. The filter transform G, which carries the points' scales, is
// applied when the weight is packed (conv_cpu.cpp); B^T and A^T hold small numbers (at most 8
// in magnitude, in quarters and eighths), so the transforms round little.
template <int N>
struct WinogradInput;

template <>
struct WinogradInput<4> {
  // B^T rows: (-1 0 1 0), (0 1 1 0), (0 -1 1 0), (0 -1 0 1)
  static inline void input(const Vec* x, Vec* r) {
    r[0] = sub(x[2], x[0]);
    r[1] = add(x[1], x[2]);
    r[2] = sub(x[2], x[1]);
    r[3] = sub(x[3], x[1]);
  }
};

template <>
struct WinogradInput<6> {
  // B^T rows: (4 0 -5 0 1 0), (0 -4 -4 1 1 0), (0 4 -4 -1 1 0), (0 -2 -1 2 1 0),
  // (0 2 -1 -2 1 0), (0 4 0 -5 0 1)
  static inline void input(const Vec* x, Vec* r) {
    const Vec t0 = fma(set1(-4.f), x[1], x[3]), t1 = fma(set1(-4.f), x[2], x[4]);
    const Vec t2 = sub(x[3], x[1]), t3 = sub(x[4], x[2]);
    r[0] = fma(set1(4.f), x[0], fma(set1(-5.f), x[2], x[4]));
    r[1] = add(t0, t1);
    r[2] = sub(t1, t0);
    r[3] = fma(set1(2.f), t2, t3);
    r[4] = fma(set1(-2.f), t2, t3);
    r[5] = fma(set1(4.f), x[1], fma(set1(-5.f), x[3], x[5]));
  }
};

template <>
struct WinogradInput<8> {
  // B^T rows: (-1 0 21/4 0 -21/4 0 1 0), (0 1 1 -17/4 -17/4 1 1 0), (0 -1 1 17/4 -17/4 -1 1 0),
  // (0 1/2 1/4 -5/2 -5/4 2 1 0), (0 -1/2 1/4 5/2 -5/4 -2 1 0), (0 2 4 -5/2 -5 1/2 1 0),
  // (0 -2 4 5/2 -5 -1/2 1 0), (0 -1 0 21/4 0 -21/4 0 1): rows in +- pairs of shared halves
  static inline void input(const Vec* x, Vec* r) {
    r[0] = fma(set1(5.25f), sub(x[2], x[4]), sub(x[6], x[0]));
    r[7] = fma(set1(5.25f), sub(x[3], x[5]), sub(x[7], x[1]));
    const Vec t1 = fma(set1(-4.25f), x[4], add(x[2], x[6]));
    const Vec t2 = fma(set1(-4.25f), x[3], add(x[1], x[5]));
    r[1] = add(t1, t2);
    r[2] = sub(t1, t2);
    const Vec t3 = fma(set1(0.25f), x[2], fma(set1(-1.25f), x[4], x[6]));
    const Vec t4 = fma(set1(0.5f), x[1], fma(set1(-2.5f), x[3], add(x[5], x[5])));
    r[3] = add(t3, t4);
    r[4] = sub(t3, t4);
    const Vec t5 = fma(set1(4.f), x[2], fma(set1(-5.f), x[4], x[6]));
    const Vec t6 = fma(set1(2.f), x[1], fma(set1(-2.5f), x[3], mul(set1(0.5f), x[5])));
    r[5] = add(t5, t6);
    r[6] = sub(t5, t6);
  }
};

template <int M, int N>
struct WinogradOutput;

template <>
struct WinogradOutput<2, 4> {
  // A^T rows: (1 1 1 0), (0 1 -1 1)
  static inline void output(const Vec* m, Vec* y) {
    y[0] = add(add(m[0], m[1]), m[2]);
    y[1] = add(sub(m[1], m[2]), m[3]);
  }
};

template <>
struct WinogradOutput<2, 6> {
  // A^T rows: (1 1 1 1 1 0), (0 1 -1 2 -2 1)
  static inline void output(const Vec* m, Vec* y) {
    y[0] = add(add(m[0], add(m[1], m[2])), add(m[3], m[4]));
    y[1] = add(fma(set1(2.f), sub(m[3], m[4]), sub(m[1], m[2])), m[5]);
  }
};

template <>
struct WinogradOutput<4, 6> {
  // A^T rows: (1 1 1 1 1 0), (0 1 -1 2 -2 0), (0 1 1 4 4 0), (0 1 -1 8 -8 1)
  static inline void output(const Vec* m, Vec* y) {
    const Vec a = add(m[1], m[2]), b = sub(m[1], m[2]), c = add(m[3], m[4]),
              d = sub(m[3], m[4]);
    y[0] = add(add(m[0], a), c);
    y[1] = fma(set1(2.f), d, b);
    y[2] = fma(set1(4.f), c, a);
    y[3] = add(fma(set1(8.f), d, b), m[5]);
  }
};

template <>
struct WinogradOutput<4, 8> {
  // A^T rows: (1 1 1 1 1 1 1 0), (0 1 -1 2 -2 1/2 -1/2 0), (0 1 1 4 4 1/4 1/4 0),
  // (0 1 -1 8 -8 1/8 -1/8 1)
  static inline void output(const Vec* m, Vec* y) {
    const Vec a = add(m[1], m[2]), b = sub(m[1], m[2]), c = add(m[3], m[4]),
              d = sub(m[3], m[4]), e = add(m[5], m[6]), f = sub(m[5], m[6]);
    y[0] = add(add(m[0], a), add(c, e));
    y[1] = fma(set1(2.f), d, fma(set1(0.5f), f, b));
    y[2] = fma(set1(4.f), c, fma(set1(0.25f), e, a));
    y[3] = add(fma(set1(8.f), d, fma(set1(0.125f), f, b)), m[7]);
  }
};

// M vectors of M interleaved phases (out[M*l + p] = y[p][l]) into `out`, M*V floats in M
// vectors (M = 2, 4 or 8): the even phases' and the odd phases' interleaved streams, then one
// interleave of the two (log2 M rounds of M / 2 interleaves).
template <int M>
MTU_ALWAYS_INLINE void interleave_phases(const Vec* y, Vec* out) {
  if constexpr (M == 2) {
    interleave(y[0], y[1], out[0], out[1]);
  } else {
    Vec even[M / 2], odd[M / 2], e[M / 2], o[M / 2];
#pragma GCC unroll 4
    for (int p = 0; p < M / 2; ++p) even[p] = y[2 * p], odd[p] = y[2 * p + 1];
    interleave_phases<M / 2>(even, e);
    interleave_phases<M / 2>(odd, o);
#pragma GCC unroll 4
    for (int l = 0; l < M / 2; ++l) interleave(e[l], o[l], out[2 * l], out[2 * l + 1]);
  }
}

// The Winograd input transform's loops over a tile's rows and columns: unrolled where the
// registers hold a row's vectors and the next's (AVX-512's 32); with 16 (AVX2) GCC interleaved
// the unrolled rows and spilled around every operation (~600 vector moves to and from the stack
// in the 8 x 8 transform), so there the rows, then the columns, run one at a time through the
// scratch (the same operations: the same values). The output transform stays unrolled: through
// the scratch it was slower (docs/benchmarks.md).
constexpr int kTransformUnroll = kRegisters <= 16 ? 1 : 8;

// Convolution R x R, stride 1, padding a.pad, by Winograd F(M x M, R x R): each M x M output
// tile is A^T [U . (B^T d B)] A, d its N x N input patch (N = M + R - 1) and U = G g G^T the
// packed weight, so a tile takes N^2 multiply-adds per channel pair instead of M^2 R^2 (16
// against 36 for F(2x2, 3x3), 64 against 400 for F(4x4, 5x5)). Vectorised over V tiles: tile
// t covers output columns M*t .. M*t + M - 1, and its patch's column j is input column
// M*t - pad + j, read from a row packed in M phases of its columns (pack_row with stride M). A
// task is a range of tile rows. Per strip of NV*V tiles, down the rows: the ring of N packed
// input rows (M new ones a tile row), the input transform of every channel into vbuf (N^2
// planes of Cin x NV*V floats, plane_stride apart), and per block of CB output channels N^2
// products with CB x NV accumulators in registers (the inner loop of conv_rows) into mbuf, then
// the output transform, bias, ReLU and residual, interleaved into M rows.
//
// Up: the 4x4 stride-2 transposed conv (pad 1), which is a 3x3 conv (pad 1) of the input with
// 4 Cout channels followed by a 2x depth-to-space: its channel 4 co + 2 py + px is output
// channel co at the pixels (2y + py, 2x + px) (conv_direct_pack_cpu derives its weight from
// the transposed one). The conv runs on the input's H x W (the output is 2H x 2W), and the
// epilogue takes the channels in pairs (px = 0, 1): their two output transforms, interleaved
// into 2M phases, are 2M vectors of output row 2y + py. CB is even, so a pair is one block's.
// The products per input pixel: 9 Cin Cout against the transposed kernel's 16.
template <int CB, int M, int R, int NV, bool Embed, bool Up>
void winograd_strip(const ConvArgs& a, int64_t begin, int64_t end, int64_t t0, float* buf,
                    PhaseTimer& timer) {
  static_assert(!Up || (CB % 2 == 0 && R == 3), "Up: pairs of channels, a 3x3 conv");
  constexpr int N = M + R - 1, T = NV * V, LV = T + (N - 1) / M, L = padded(LV);
  constexpr int CHUNK = M * L, UP = Up ? 2 : 1;
  using In = WinogradInput<N>;
  using Out = WinogradOutput<M, N>;
  const int64_t cin = input_channels(a);
  // the output's rows and columns, the conv's rows, channels and tile rows
  const int64_t OH = a.out_h, OW = a.out_w, CH = OH / UP;
  const int64_t cout = UP * UP * a.cout, TH = (CH + M - 1) / M;
  const int64_t plane = plane_stride(cin * T);
  float* const vbuf = buf + N * cin * CHUNK;
  float* const mbuf = vbuf + N * N * plane;
  alignas(64) float scratch[N * N * V];  // the input transform's row pass
  const int64_t cstart = M * t0 - a.pad;
  Mask mask[UP * M * NV];
  for (int m = 0; m < UP * M * NV; ++m) mask[m] = make_mask(UP * M * t0 + m * V, OW);
  Ring ring;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t n = t / TH, ty = t % TH, top = M * ty - a.pad;
    int64_t slot[N];
    ring.advance<N, M, LV>(a, n, top, cstart, buf, slot);
    // the next tile row's M new input rows (the columns their packing reads, as in conv_strip),
    // fetched a few lines before each channel's input transform and each product step below
    LineSpread next_rows;
    if (t + 1 < end && (t + 1) / TH == n)
      spread_input_rows(next_rows, a, n, top + N, M, cstart, cstart + PackShape<M, LV>::kCols);
    next_rows.start(cin + a.cout_blocks * N * N);
    timer.lap(kPack);
    // input transform: vbuf[xi][ci] = (B^T d B)[xi] for the strip's tiles, the rows' B^T
    // through a small scratch (L1) rather than N^2 vectors in registers (64 for N = 8: the
    // compiler spilled them), then the columns'
    const float* channel = buf;
    for (int64_t ci = 0; ci < cin; ++ci, channel += N * CHUNK) {
      next_rows.step();
#pragma GCC unroll 1
      for (int v = 0; v < NV; ++v) {
#pragma GCC unroll kTransformUnroll
        for (int i = 0; i < N; ++i) {
          const float* row = channel + slot[i] + v * V;
          Vec d[N], r[N];
#pragma GCC unroll 8
          for (int j = 0; j < N; ++j) d[j] = loadu(row + (j % M) * L + j / M);
          In::input(d, r);
#pragma GCC unroll 8
          for (int j = 0; j < N; ++j) storeu(scratch + (i * N + j) * V, r[j]);
        }
#pragma GCC unroll kTransformUnroll
        for (int j = 0; j < N; ++j) {
          Vec col[N], out[N];
#pragma GCC unroll 8
          for (int i = 0; i < N; ++i) col[i] = loadu(scratch + (i * N + j) * V);
          In::input(col, out);
#pragma GCC unroll 8
          for (int i = 0; i < N; ++i) storeu(vbuf + (i * N + j) * plane + ci * T + v * V, out[i]);
        }
      }
    }
    timer.lap(kInputTransform);
    for (int64_t g = 0; g < a.cout_blocks; ++g) {
      const float* w = a.weight + g * N * N * cin * CB;
      // the block's residual and output lines (its M rows; Up: the 2M rows of its channels),
      // spread over its N^2 products
      LineSpread outputs;
      if constexpr (Up)
        spread_outputs(outputs, a, n, g * CB / 4, (g * CB + CB - 1) / 4 - g * CB / 4 + 1,
                       2 * M * ty, 2 * M, 2 * M * t0, 2 * M * (t0 + T));
      else
        spread_outputs(outputs, a, n, g * CB, CB, M * ty, M, M * t0, M * t0 + M * T);
      outputs.start(N * N);
      // the products of the block's C real channels (C < CB only in a padded last block)
      const auto products = [&]<int C>() {
        // (not unrolled: one product's code is 2 * CB * NV multiply-adds a channel already)
#pragma GCC unroll 1
        for (int xi = 0; xi < N * N; ++xi) {
          next_rows.step();
          outputs.step();
          Vec acc[C][NV];
#pragma GCC unroll 16
          for (int c = 0; c < C; ++c)
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[c][v] = zero();
          const float* src = vbuf + xi * plane;
          for (int64_t ci = 0; ci < cin; ++ci, src += T, w += CB) {
            Vec in[NV];
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) in[v] = loadu(src + v * V);
            if constexpr (Embed && NV == kEmbeddedBroadcastVectors) {  // (as in conv_strip)
#pragma GCC unroll 16
              for (int c = 0; c < C; ++c)
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) acc[c][v] = fma_bcast(in[v], w + c, acc[c][v]);
            } else {
#pragma GCC unroll 16
              for (int c = 0; c < C; ++c) {
                const Vec b = bcast(w + c);
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) acc[c][v] = fma(in[v], b, acc[c][v]);
              }
            }
          }
#pragma GCC unroll 16
          for (int c = 0; c < C; ++c)
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) storeu(mbuf + (xi * CB + c) * T + v * V, acc[c][v]);
        }
      };
      with_channels<CB>(cout - g * CB, products);
      timer.lap(kProducts);
      // output transform of the block's channel c, strip vector v: rows (over the tile's
      // columns), then columns, into y[column phase][output row]
      const auto output_transform = [&](int c, int v, Vec (&y)[M][M])
                                        __attribute__((always_inline)) {
        Vec s[N][M];
#pragma GCC unroll 8
        for (int i = 0; i < N; ++i) {
          Vec m[N];
#pragma GCC unroll 8
          for (int j = 0; j < N; ++j) m[j] = loadu(mbuf + ((i * N + j) * CB + c) * T + v * V);
          Out::output(m, s[i]);
        }
#pragma GCC unroll 4
        for (int x = 0; x < M; ++x) {
          Vec col[N];
#pragma GCC unroll 8
          for (int i = 0; i < N; ++i) col[i] = s[i][x];
          Out::output(col, y[x]);
        }
      };
      if constexpr (!Up) {
#pragma GCC unroll 1
        for (int c = 0; c < CB; ++c) {
          const int64_t co = g * CB + c;
          if (co >= a.cout) break;
#pragma GCC unroll 1
          for (int v = 0; v < NV; ++v) {
            Vec y[M][M];
            output_transform(c, v, y);
#pragma GCC unroll 4
            for (int yy = 0; yy < M; ++yy) {
              const int64_t oy = M * ty + yy;
              if (oy >= OH) break;
              Vec phases[M], row[M];
#pragma GCC unroll 4
              for (int x = 0; x < M; ++x) phases[x] = y[x][yy];
              interleave_phases<M>(phases, row);
              const int64_t off = (co * OH + oy) * OW + M * t0 + M * v * V;
#pragma GCC unroll 4
              for (int k = 0; k < M; ++k)
                finish(a, row[k], co, n, off + k * V, mask[M * v + k]);
            }
          }
        }
      } else {
        // channel pairs 4 co + 2 py + (0, 1): output row 2 (M ty + yy) + py, its columns
        // 2 M t + 2 x + px for the tile t of each lane and the column phase x
#pragma GCC unroll 1
        for (int c = 0; c < CB; c += 2) {
          const int64_t vc = g * CB + c, co = vc / 4, py = vc / 2 % 2;
          if (vc >= cout) break;
#pragma GCC unroll 1
          for (int v = 0; v < NV; ++v) {
            Vec y[2][M][M];
            output_transform(c, v, y[0]);
            output_transform(c + 1, v, y[1]);
#pragma GCC unroll 4
            for (int yy = 0; yy < M; ++yy) {
              if (M * ty + yy >= CH) break;
              const int64_t oy = 2 * (M * ty + yy) + py;
              Vec phases[2 * M], row[2 * M];
#pragma GCC unroll 8
              for (int x = 0; x < 2 * M; ++x) phases[x] = y[x % 2][x / 2][yy];
              interleave_phases<2 * M>(phases, row);
              const int64_t off = (co * OH + oy) * OW + 2 * M * (t0 + v * V);
#pragma GCC unroll 8
              for (int k = 0; k < 2 * M; ++k)
                finish(a, row[k], co, n, off + k * V, mask[2 * M * v + k]);
            }
          }
        }
      }
      timer.lap(kEpilogue);
    }
  }
}

template <int CB, int M, int R, bool Embed, bool Up = false>
void winograd_rows(const ConvArgs& a, int64_t begin, int64_t end, float* buf) {
  PhaseTimer timer;
  const int64_t conv_width = Up ? a.out_w / 2 : a.out_w;
  for_each_strip<kStripVectors[CB]>((conv_width + M - 1) / M, [&]<int NV>(int64_t t0) {
    winograd_strip<CB, M, R, NV, Embed, Up>(a, begin, end, t0, buf, timer);
  });
  end_stores(a);
}
