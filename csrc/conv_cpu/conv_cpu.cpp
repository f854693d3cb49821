// Direct convolutions for the detail networks (CPU, float32, NCHW): K x K (K = 3, 5) with
// stride 1, 2 or 4, the 4x4 stride-2 transposed convolution, and Winograd F(2x2, KxK) and
// F(4x4, KxK) for the stride-1 K x K layers (the same register-blocked inner loop over the
// transformed tiles; 4x and 6.25x fewer multiply-adds for F(4x4, 3x3) and F(4x4, 5x5)).
//
// oneDNN vectorises convolutions over output channels, 16 at a time with AVX-512, so the MTU
// network's 26- and 52-channel layers fill only 26/32 and 52/64 of the lanes (and NCHW tensors
// are reordered to its blocked layout around every call). These kernels vectorise over the
// output row instead (16 or 8 pixels a vector, any width through masked loads and stores) and
// keep a block of CB output channels x 2 vectors of accumulators in registers: every input load
// feeds 2*CB multiply-adds whatever the channel count.
//
// Fused into one pass (no cat, no extra read or write of the output):
//   out = [relu](conv(cat(inputs), weight) + bias) + [residual]
// The inputs are a list of NCHW tensors read in place (the network's concatenations are never
// built). The weight is packed once by conv_direct_pack_cpu so that the CB broadcasts of one
// tap are contiguous. The kernels (conv_cpu_kernels.h) are compiled for AVX-512 and for AVX2
// (target pragmas, chosen at run time from the CPU); conv_direct_isa_cpu() is "" on other CPUs
// and the Python side then runs torch's convolution.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../common/cpu_features.h"
#include "../common/streaming.h"
#include "conv_cpu.h"

#ifdef MTU_X86
#include <immintrin.h>
#endif

namespace mtu {
namespace {

// For the kernels' helpers that must be inlined into each kernel instantiation (see pack_row)
#define MTU_ALWAYS_INLINE inline __attribute__((always_inline))

constexpr int kMaxInputs = 8;

// The bands of rows each thread's range of a call is walked in (see conv_direct_cpu)
constexpr int64_t kBandsPerRange = 8;

// Raw pointers and sizes of one call; the kernels see nothing of torch.
struct ConvArgs {
  const float* in[kMaxInputs];
  int64_t in_channels[kMaxInputs];
  int64_t in_batch_stride[kMaxInputs];
  int num_inputs;
  const float* weight;    // packed
  const float* bias;      // (Cout,) or nullptr
  const float* residual;  // (N, Cout, OH, OW) or nullptr
  int64_t residual_batch_stride;
  float* out;  // (N, Cout, OH, OW)
  int64_t out_batch_stride;
  int64_t in_h, in_w, out_h, out_w, pad, cout;
  int64_t cout_blocks;  // the output channels in blocks of CB (the packed weight's first dim)
  bool relu;
  bool stream;  // non-temporal stores of the output (larger than cpu::kStreamBytes)
};

// The channels a kernel convolves: the inputs' together (read as one concatenation).
inline int64_t input_channels(const ConvArgs& a) {
  int64_t cin = 0;
  for (int i = 0; i < a.num_inputs; ++i) cin += a.in_channels[i];
  return cin;
}

// The stride of the Winograd kernel's transformed-input planes (one per point xi of the N x N
// patch, Cin x T floats each): whole 64-byte lines, an odd number of them. The input transform
// stores a channel's N^2 vectors one to a plane; at an even number of lines (enc1's 52 channels
// x 32 tiles: 104) those N^2 lines fell into a few of the 64 L1 sets (8 there) and evicted one
// another as they were written. An odd stride spreads them over all 64 sets (figures in
// docs/benchmarks.md).
constexpr int64_t plane_stride(int64_t floats) { return ((floats + 15) / 16 | 1) * 16; }

// Where the kernels' time goes (the benchmark's stage table): with the clock on, every kernel
// call adds the cycles (rdtsc, summed over its threads) it spends packing input rows,
// transforming them (Winograd), multiplying, and in its epilogue (bias, ReLU, residual and the
// store; the Winograd output transform). Off (the default), a phase costs one branch.
enum Phase { kPack, kInputTransform, kProducts, kEpilogue, kPhases };

struct PhaseClock {
  std::atomic<bool> on{false};
  std::atomic<uint64_t> cycles[kPhases] = {};
};

PhaseClock& phase_clock() {
  static PhaseClock clock;
  return clock;
}

#ifdef MTU_X86
// One thread's laps in one kernel call, added to the clock when it ends.
class PhaseTimer {
 public:
  PhaseTimer() : on_(phase_clock().on.load(std::memory_order_relaxed)) {
    if (on_) last_ = __rdtsc();
  }
  ~PhaseTimer() {
    if (on_)
      for (int p = 0; p < kPhases; ++p)
        phase_clock().cycles[p].fetch_add(spent_[p], std::memory_order_relaxed);
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;
  // the time since the previous lap went to phase p
  void lap(Phase p) {
    if (on_) {
      const uint64_t now = __rdtsc();
      spent_[p] += now - last_;
      last_ = now;
    }
  }

 private:
  const bool on_;
  uint64_t last_ = 0;
  uint64_t spent_[kPhases] = {};
};
#endif

// Which cache LineSpread fetches into: L1 (prefetcht0) or L2 only (prefetcht1). Set by
// conv_direct_use_prefetch_cpu, read once a LineSpread; the values never change with it.
std::atomic<bool>& prefetch_into_l1() {
  static std::atomic<bool> l1{true};
  return l1;
}

#ifdef MTU_X86
// Prefetches the lines of a few blocks of plane rows, `per` lines each step(), so that a
// kernel's next reads are fetched a few lines at a time between its multiply-adds rather than
// in one burst (or on demand): a block is rows [y0, y1) x columns [x0, x1) of `planes` planes,
// each `plane` floats after the previous. The NCHW rows a Winograd strip reads and writes are
// short segments (8-28 lines) a plane apart, too many streams for the hardware prefetchers; a
// burst of them filled the miss buffers and stalled the products. Into L1 by default: on an
// AMD Zen 5, frames took 0.98-0.99x the time of fetching into L2 only (single layers
// 0.88-1.04x); on a Zen 4 and an Intel Xeon the two had timed alike (docs/benchmarks.md).
class LineSpread {
 public:
  // Adds a block (nothing where it is empty; 0 <= x0)
  void add(const float* base, int64_t planes, int64_t plane, int64_t width, int64_t y0,
           int64_t y1, int64_t x0, int64_t x1) {
    if (planes <= 0 || y1 <= y0 || x1 <= x0 || count_ == kMaxBlocks) return;
    x0 &= ~int64_t{15};  // from the line holding x0 (rows start on a line in the network)
    blocks_[count_++] = {base, planes, plane, width, y0, y1, x0, x1};
    lines_ += planes * (y1 - y0) * ((x1 - x0 + 15) / 16);
  }
  // Spreads the blocks' lines over `steps` calls of step()
  void start(int64_t steps) {
    per_ = steps > 0 ? (lines_ + steps - 1) / steps : lines_;
    b_ = 0;
    if (count_) rewind();
  }
  MTU_ALWAYS_INLINE void step() {
    for (int64_t k = 0; k < per_ && b_ < count_; ++k) {
      const Block& b = blocks_[b_];
      const char* line =
          reinterpret_cast<const char*>(b.base + p_ * b.plane + y_ * b.width + x_);
      if (l1_)
        _mm_prefetch(line, _MM_HINT_T0);
      else
        _mm_prefetch(line, _MM_HINT_T1);
      if ((x_ += 16) < b.x1) continue;
      x_ = b.x0;
      if (++y_ < b.y1) continue;
      y_ = b.y0;
      if (++p_ < b.planes) continue;
      if (++b_ < count_) rewind();
    }
  }

 private:
  struct Block {
    const float* base;
    int64_t planes, plane, width, y0, y1, x0, x1;
  };
  static constexpr int kMaxBlocks = 2 * kMaxInputs + 2;
  void rewind() {
    p_ = 0;
    y_ = blocks_[b_].y0;
    x_ = blocks_[b_].x0;
  }
  Block blocks_[kMaxBlocks];
  const bool l1_ = prefetch_into_l1().load(std::memory_order_relaxed);
  int count_ = 0, b_ = 0;
  int64_t lines_ = 0, per_ = 0, p_ = 0, y_ = 0, x_ = 0;
};

// The input rows [y0, y0 + rows) x columns [x0, x1) of every channel of sample n (clipped to
// the image), into `spread`
inline void spread_input_rows(LineSpread& spread, const ConvArgs& a, int64_t n, int64_t y0,
                              int64_t rows, int64_t x0, int64_t x1) {
  const int64_t HW = a.in_h * a.in_w;
  for (int i = 0; i < a.num_inputs; ++i)
    spread.add(a.in[i] + n * a.in_batch_stride[i], a.in_channels[i], HW, a.in_w,
               y0 < 0 ? 0 : y0, y0 + rows < a.in_h ? y0 + rows : a.in_h, x0 < 0 ? 0 : x0,
               x1 < a.in_w ? x1 : a.in_w);
}

// The residual and (unless streamed, then written without being read) output lines of
// channels [c0, c0 + cb), rows [y0, y0 + rows) x columns [x0, x1) of sample n, into `spread`
inline void spread_outputs(LineSpread& spread, const ConvArgs& a, int64_t n, int64_t c0,
                           int64_t cb, int64_t y0, int64_t rows, int64_t x0, int64_t x1) {
  const int64_t plane = a.out_h * a.out_w, channels = (c0 + cb < a.cout ? c0 + cb : a.cout) - c0;
  const int64_t y1 = y0 + rows < a.out_h ? y0 + rows : a.out_h;
  x1 = x1 < a.out_w ? x1 : a.out_w;
  if (a.residual)
    spread.add(a.residual + n * a.residual_batch_stride + c0 * plane, channels, plane,
               a.out_w, y0, y1, x0, x1);
  if (!a.stream)
    spread.add(a.out + n * a.out_batch_stride + c0 * plane, channels, plane, a.out_w, y0, y1,
               x0, x1);
}

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
// 16 lanes; 13 x 2 accumulators + 2 inputs + a broadcast of 32 registers
using Vec = __m512;
using Mask = __mmask16;
// the transposed conv: 2 phases x 6 x 2 accumulators + 2 shifts x 2 inputs + a broadcast, or
// for 7 to 13 channels a block 2 x 13 x 1 + 2 + 1
constexpr int V = 16, kRegisters = 32, kMaxCB = 13, kDeconvVectors = 2, kDeconvMaxCB = 13;
inline Vec zero() { return _mm512_set1_ps(0.f); }
inline Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
inline void storeu(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec load_masked(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
inline void store_masked(Mask m, float* p, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
inline Vec bcast(const float* p) { return _mm512_set1_ps(*p); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
// acc + a * (*p in every lane), the broadcast done by the multiply-add's own load (an embedded
// broadcast, {1to16}) rather than by a broadcast instruction into a register: the same
// arithmetic, rounded once. GCC folds a broadcast used once this way by itself, but keeps one
// used by two multiply-adds in a register (see kEmbeddedBroadcastVectors).
inline Vec fma_bcast(Vec a, const float* p, Vec acc) {
  asm("vfmadd231ps %[p]%{1to16%}, %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [p] "m"(*p));
  return acc;
}
// Strips of this many vectors can multiply each weight by embedded broadcasts, one a
// multiply-add (fma_bcast), instead of one broadcast into a register for the strip's vectors
// (the kernels instantiated with Embed; which of the two runs is embedded_broadcasts()'s
// choice). With 2 (the blocks of 10 to 13 output channels: every layer of 26 or 52), the
// Winograd products loop alone ran 1.05-1.12x faster on an Intel Xeon (Emerald Rapids), and
// slower on an AMD Zen 5; with 1, GCC folds the broadcast already; with 3, 4 or 8 it was no
// faster or slower on the Xeon (docs/benchmarks.md).
constexpr int kEmbeddedBroadcastVectors = 2;
inline Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
inline Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec set1(float x) { return _mm512_set1_ps(x); }
// (_mm512_max_ps passes an undefined vector, which GCC 12 warns about as uninitialised)
inline Vec max(Vec a, Vec b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }
inline bool is_full(Mask m) { return m == 0xFFFF; }
inline void stream(float* p, Vec v) { _mm512_stream_ps(p, v); }
inline Mask make_mask(int64_t start, int64_t width) {
  const int64_t lo = start < 0 ? -start : 0, hi = width - start < 16 ? width - start : 16;
  if (hi <= lo) return 0;
  const uint32_t below_hi = hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u);
  return static_cast<Mask>(below_hi & ~((1u << lo) - 1u));
}
inline void interleave(Vec a, Vec b, Vec& lo, Vec& hi) {
  lo = _mm512_permutex2var_ps(
      a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
  hi = _mm512_permutex2var_ps(
      a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b);
}
inline void deinterleave(Vec a, Vec b, Vec& even, Vec& odd) {
  const Vec e = _mm512_permutex2var_ps(
      a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  odd = _mm512_permutex2var_ps(
      a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
  even = e;
}
#include "conv_cpu_kernels.h"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
// 8 lanes; 6 x 2 accumulators + 2 inputs + a broadcast of 16 registers
using Vec = __m256;
using Mask = __m256i;
// the transposed conv: 2 phases x 2 x 2 accumulators + 2 shifts x 2 inputs + a broadcast. A
// broadcast feeds as many multiply-adds as the block has input vectors: with one (a block of
// 6 channels), 24 broadcasts and 3 loads a row fed 24 multiply-adds of 8 lanes, and the loads
// bound the products (on Zen 4, AVX2 forced: 1.23-1.31x slower than blocks of 2 x 2 vectors,
// which also pad 26 channels to 26 rather than 30)
constexpr int V = 8, kRegisters = 16, kMaxCB = 6, kDeconvVectors = 2, kDeconvMaxCB = 2;
inline Vec zero() { return _mm256_setzero_ps(); }
inline Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
inline void storeu(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec load_masked(Mask m, const float* p) { return _mm256_maskload_ps(p, m); }
inline void store_masked(Mask m, float* p, Vec v) { _mm256_maskstore_ps(p, m, v); }
inline Vec bcast(const float* p) { return _mm256_broadcast_ss(p); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
// (AVX2 has no embedded broadcast: every strip broadcasts each weight into a register. Never
// called here; defined so that the kernels' discarded `if constexpr` branch compiles.)
inline Vec fma_bcast(Vec a, const float* p, Vec acc) { return fma(a, bcast(p), acc); }
constexpr int kEmbeddedBroadcastVectors = 0;
inline Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
inline Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec set1(float x) { return _mm256_set1_ps(x); }
inline Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline bool is_full(Mask m) { return _mm256_movemask_ps(_mm256_castsi256_ps(m)) == 0xFF; }
inline void stream(float* p, Vec v) { _mm256_stream_ps(p, v); }
inline Mask make_mask(int64_t start, int64_t width) {
  const int64_t clamped = start < -64 ? -64 : (start > width ? width : start);
  const __m256i col = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                       _mm256_set1_epi32(static_cast<int>(clamped)));
  return _mm256_and_si256(_mm256_cmpgt_epi32(col, _mm256_set1_epi32(-1)),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(width)), col));
}
inline void interleave(Vec a, Vec b, Vec& lo, Vec& hi) {
  const Vec l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);
  lo = _mm256_permute2f128_ps(l, h, 0x20);
  hi = _mm256_permute2f128_ps(l, h, 0x31);
}
inline void deinterleave(Vec a, Vec b, Vec& even, Vec& odd) {
  // per 128-bit lane a0 a2 b0 b2 | a4 a6 b4 b6, then the 64-bit quarters reordered
  const Vec e = _mm256_shuffle_ps(a, b, 0x88), o = _mm256_shuffle_ps(a, b, 0xDD);
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8));
}
#include "conv_cpu_kernels.h"
}  // namespace avx2
#pragma GCC pop_options
#endif  // MTU_X86

using RowsFn = void (*)(const ConvArgs&, int64_t, int64_t, float*);

// kWinograd2 / kWinograd4: Winograd F(2x2, KxK) / F(4x4, KxK); kTransposedWinograd: the
// transposed conv as a 3x3 conv of 4 Cout channels by F(4x4, 3x3) (winograd_strip's Up)
enum class Algorithm { kDirect, kWinograd2, kWinograd4, kTransposed, kTransposedWinograd };

// `winograd`: the Winograd output tile, 0 (none), 2 or 4 (transposed: 4 or none)
Algorithm algorithm(bool transposed, int64_t winograd) {
  if (transposed) return winograd ? Algorithm::kTransposedWinograd : Algorithm::kTransposed;
  if (winograd == 2) return Algorithm::kWinograd2;
  return winograd == 4 ? Algorithm::kWinograd4 : Algorithm::kDirect;
}

bool cpu_has_avx512() { return cpu::has_avx512f(); }

bool cpu_has_avx2() { return cpu::has_avx2_fma(); }

// The instruction set in use: the best this CPU has, unless conv_direct_use_isa_cpu chose a
// lesser one (the tests run the AVX2 kernels on AVX-512 machines this way).
std::string& isa_override() {
  static std::string isa = "best";
  return isa;
}

bool has_avx512() { return cpu_has_avx512() && isa_override() == "best"; }

bool has_avx2() { return cpu_has_avx2() && isa_override() != ""; }

// How the AVX-512 kernels' strips of kEmbeddedBroadcastVectors broadcast their weights:
// "auto" (the CPU's choice below), "embedded" or "registers" (conv_direct_use_broadcasts_cpu).
std::string& broadcast_override() {
  static std::string mode = "auto";
  return mode;
}

// Embedded broadcasts (one a multiply-add) or one broadcast into a register a weight: the same
// arithmetic, the same outputs bit for bit, at other speeds by CPU. On an Intel Xeon (Emerald
// Rapids) embedded ran the 26- and 52-channel layers 0.90-0.97x the time of registers; on an
// AMD Zen 5, registers ran them 0.91-0.99x (Winograd) and 0.80-0.95x (strided) the time of
// embedded (docs/benchmarks.md). So registers on AMD CPUs (Zen 4 untimed), embedded elsewhere.
bool embedded_broadcasts() {
  const std::string& mode = broadcast_override();
  return mode == "auto" ? !cpu::is_amd() : mode == "embedded";
}

#ifdef MTU_X86
// Output channels a block: as many as the accumulators the registers hold
int max_block(Algorithm algo) {
  const bool transposed = algo == Algorithm::kTransposed;
  if (has_avx512()) return transposed ? avx512::kDeconvMaxCB : avx512::kMaxCB;
  return transposed ? avx2::kDeconvMaxCB : avx2::kMaxCB;
}
#else
int max_block(Algorithm) { return 1; }
#endif

#ifdef MTU_X86
// The instantiated kernels: conv K in {3, 5} x stride in {1, 2, 4}, CB in 1..max_block; the
// Winograd F(M x M, K x K) conv, M in {2, 4}, K in {3, 5}, stride 1, CB in 1..max_block; the
// transposed conv, CB in 1..kDeconvMaxCB. The AVX-512 conv and Winograd kernels of the blocks
// whose strips hold kEmbeddedBroadcastVectors vectors twice, with embedded broadcasts and
// without (`embedded`); the others' code is the same either way, and instantiated once.
template <int CB>
RowsFn kernel_for(bool avx512, bool embedded, Algorithm algo, int k, int stride) {
  if (CB > max_block(algo)) return nullptr;
  constexpr int CB512 = CB <= avx512::kMaxCB ? CB : 1;
  constexpr int CB2 = CB <= avx2::kMaxCB ? CB : 1;
  // the Embed argument of the AVX-512 kernel without embedded broadcasts: false only where
  // that differs from the kernel with them
  constexpr bool kNoEmbed = avx512::kStripVectors[CB512] != avx512::kEmbeddedBroadcastVectors;
  if (algo == Algorithm::kTransposed)
    return avx512 ? avx512::deconv_rows<CB512> : avx2::deconv_rows<CB2>;
  if (algo == Algorithm::kTransposedWinograd) {  // (blocks of channel pairs: CB even)
    if constexpr (CB % 2 == 1) {
      return nullptr;
    } else {
      constexpr int CB2U = CB <= avx2::kMaxCB ? CB : 2;
      return !avx512   ? avx2::winograd_rows<CB2U, 4, 3, false, true>
             : embedded ? avx512::winograd_rows<CB512, 4, 3, true, true>
                        : avx512::winograd_rows<CB512, 4, 3, kNoEmbed, true>;
    }
  }
  if (algo == Algorithm::kWinograd2 || algo == Algorithm::kWinograd4) {
    if (stride != 1 || (k != 3 && k != 5)) return nullptr;
#define MTU_WINOGRAD_CASE(M, K)                                                \
  if (k == K && (algo == Algorithm::kWinograd4) == (M == 4))                   \
    return !avx512   ? avx2::winograd_rows<CB2, M, K, false>                   \
           : embedded ? avx512::winograd_rows<CB512, M, K, true>               \
                      : avx512::winograd_rows<CB512, M, K, kNoEmbed>;
    MTU_WINOGRAD_CASE(2, 3)
    MTU_WINOGRAD_CASE(2, 5)
    MTU_WINOGRAD_CASE(4, 3)
    MTU_WINOGRAD_CASE(4, 5)
#undef MTU_WINOGRAD_CASE
  }
#define MTU_CONV_CASE(K, S)                                                    \
  if (k == K && stride == S)                                                   \
    return !avx512   ? avx2::conv_rows<CB2, K, S, false>                       \
           : embedded ? avx512::conv_rows<CB512, K, S, true>                   \
                      : avx512::conv_rows<CB512, K, S, kNoEmbed>;
  MTU_CONV_CASE(3, 1)
  MTU_CONV_CASE(5, 1)
  MTU_CONV_CASE(3, 2)
  MTU_CONV_CASE(5, 2)
  MTU_CONV_CASE(3, 4)
  MTU_CONV_CASE(5, 4)
#undef MTU_CONV_CASE
  return nullptr;
}
template <int... CBs>
RowsFn pick(int cb, Algorithm algo, int k, int stride, std::integer_sequence<int, CBs...>) {
  RowsFn fn = nullptr;
  ((fn = cb == CBs + 1 ? kernel_for<CBs + 1>(has_avx512(), embedded_broadcasts(), algo, k,
                                              stride)
                        : fn),
   ...);
  return fn;
}
#endif

RowsFn find_kernel(int64_t cb, Algorithm algo, int64_t k, int64_t stride) {
#ifdef MTU_X86
  if (!conv_direct_isa_cpu().empty())
    return pick(static_cast<int>(cb), algo, static_cast<int>(k), static_cast<int>(stride),
                std::make_integer_sequence<int, avx512::kMaxCB>{});
#endif
  return nullptr;
}

// Tiles a strip of the Winograd kernel for CB output channels a block (its NV * V)
int64_t winograd_strip(int64_t cb) {
#ifdef MTU_X86
  return has_avx512() ? avx512::kStripVectors[cb] * 16 : avx2::kStripVectors[cb] * 8;
#else
  return 0;
#endif
}

// Output channels per block for this CPU: the block size minimising the padded work, with a
// fixed cost per block for the input loads it repeats (kTransposedWinograd: of its 4 Cout
// channels, an even number)
int64_t block_channels(int64_t cout, Algorithm algo) {
  const int64_t step = algo == Algorithm::kTransposedWinograd ? 2 : 1;
  const int64_t max_cb = max_block(algo) / step * step;
  if (cout <= max_cb) return cout;
  int64_t best = max_cb, best_cost = -1;
  for (int64_t cb = max_cb; cb >= max_cb / 2 + 1; cb -= step) {
    const int64_t cost = (cout + cb - 1) / cb * (2 * cb + 3);
    if (best_cost < 0 || cost < best_cost) best = cb, best_cost = cost;
  }
  return best;
}

}  // namespace

std::string conv_direct_isa_cpu() {
  if (has_avx512()) return "avx512";
  if (has_avx2()) return "avx2";
  return "";
}

std::string conv_direct_broadcasts_cpu() {
  return embedded_broadcasts() ? "embedded" : "registers";
}

void conv_direct_use_broadcasts_cpu(const std::string& mode) {
  TORCH_CHECK(mode == "auto" || mode == "embedded" || mode == "registers",
              "broadcasts must be \"auto\", \"embedded\" or \"registers\", got \"", mode, "\"");
  broadcast_override() = mode;
}

std::string conv_direct_prefetch_cpu() { return prefetch_into_l1().load() ? "l1" : "l2"; }

void conv_direct_use_prefetch_cpu(const std::string& mode) {
  TORCH_CHECK(mode == "auto" || mode == "l1" || mode == "l2",
              "prefetch must be \"auto\", \"l1\" or \"l2\", got \"", mode, "\"");
  prefetch_into_l1().store(mode != "l2");
}

void conv_phase_timing_cpu(bool on) { phase_clock().on.store(on); }

std::vector<int64_t> conv_phase_cycles_cpu(bool reset) {
  std::vector<int64_t> cycles(kPhases);
  for (int p = 0; p < kPhases; ++p)
    cycles[p] = static_cast<int64_t>(reset ? phase_clock().cycles[p].exchange(0)
                                           : phase_clock().cycles[p].load());
  return cycles;
}

void conv_direct_use_isa_cpu(const std::string& isa) {
  TORCH_CHECK(isa == "best" || isa == "avx2" || isa.empty(),
              "isa must be \"best\", \"avx2\" or \"\" (none), got \"", isa, "\"");
  TORCH_CHECK(isa != "avx2" || cpu_has_avx2(), "this CPU has no AVX2 and FMA");
  isa_override() = isa;
}

int64_t conv_direct_packed_kernel_size(const at::Tensor& packed, bool transposed,
                                       int64_t winograd) {
  if (transposed) return 4;
  if (!winograd) return packed.size(2);
  // (G, N * N, Cin, CB) with N = M + K - 1
  int64_t n = 1;
  while (n * n < packed.size(1)) ++n;
  return n - winograd + 1;
}

int64_t conv_direct_output_size(int64_t size, int64_t k, int64_t stride, int64_t pad,
                                bool transposed) {
  return transposed ? 2 * size : (size + 2 * pad - k) / stride + 1;
}

bool conv_direct_supported_cpu(int64_t k, int64_t stride, bool transposed, int64_t winograd) {
  if (transposed && winograd && winograd != 4) return false;
  // (the transposed conv by Winograd has blocks of channel pairs)
  return find_kernel(transposed && winograd ? 2 : 1, algorithm(transposed, winograd), k,
                     stride) != nullptr;
}

namespace {

// Winograd F(M, K) filter transform G (N x K, N = M + K - 1), rows in the order of the points
// of WinogradInput<N>'s B^T (0, 1, -1[, 2, -2[, 1/2, -1/2]], infinity); it carries the scales
// B^T leaves out (derived as in Lavin & Gray, and checked against direct convolutions by the
// tests).
at::Tensor winograd_filter_transform(int64_t m, int64_t k) {
  std::vector<double> g;
  if (m == 2 && k == 3) {
    g = {-1, 0, 0, .5, .5, .5, .5, -.5, .5, 0, 0, 1};
  } else if (m == 2 && k == 5) {
    const double a = 1. / 6, b = 1. / 12, c = 1. / 24;
    g = {.25, 0, 0, 0, 0, -a, -a, -a, -a, -a, -a, a, -a, a, -a,
         c, b, a, 2 * a, 4 * a, c, -b, a, -2 * a, 4 * a, 0, 0, 0, 0, 1};
  } else if (m == 4 && k == 3) {
    const double a = 1. / 6, b = 1. / 12, c = 1. / 24;
    g = {.25, 0, 0, -a, -a, -a, -a, a, -a, c, b, a, c, -b, a, 0, 0, 1};
  } else {  // m == 4, k == 5
    const double a = 2. / 9, b = 1. / 90, c = 1. / 45;
    g = {-1, 0, 0, 0, 0,  //
         -a, -a, -a, -a, -a, -a, a, -a, a, -a,
         b, c, 2 * c, 4 * c, 8 * c, b, -c, 2 * c, -4 * c, 8 * c,
         32 * c, 16 * c, 8 * c, 4 * c, 2 * c, 32 * c, -16 * c, 8 * c, -4 * c, 2 * c,
         0, 0, 0, 0, 1};
  }
  return at::tensor(g, at::kDouble).view({m + k - 1, k});
}

// The transposed 4x4 stride-2 conv (pad 1) weight (Cin, Cout, 4, 4) as the 3x3 conv (pad 1)
// weight (4 Cout, Cin, 3, 3) whose channel 4 co + 2 py + px is output channel co at the
// pixels (2y + py, 2x + px): output row 2y + py takes input rows y - 1, y, y + 1 through the
// kernel rows 3, 1, - (py = 0) or -, 2, 0 (py = 1); the columns alike.
at::Tensor transposed_as_conv3x3(const at::Tensor& weight) {
  const int64_t cin = weight.size(0), cout = weight.size(1);
  const int64_t taps[2][3] = {{3, 1, -1}, {-1, 2, 0}};
  auto w3 = at::zeros({cout, 2, 2, cin, 3, 3}, weight.options());
  for (int py = 0; py < 2; ++py)
    for (int px = 0; px < 2; ++px)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          if (taps[py][i] >= 0 && taps[px][j] >= 0)
            w3.select(1, py).select(1, px).select(2, i).select(2, j).copy_(
                weight.select(2, taps[py][i]).select(2, taps[px][j]).t());
  return w3.view({4 * cout, cin, 3, 3});
}

// A conv weight (Cout, Cin, K, K) in blocks of cb output channels (the last zero-padded):
// (G, Cin, K, K, CB), or with winograd U = G g G^T per channel pair (in double), (G, N * N,
// Cin, CB)
at::Tensor pack_conv(const at::Tensor& weight, int64_t winograd, int64_t cb) {
  const int64_t cout = weight.size(0), cin = weight.size(1), k = weight.size(2);
  const int64_t cout_blocks = (cout + cb - 1) / cb;
  at::Tensor taps = weight.to(at::kFloat);
  if (winograd) {
    const auto g = winograd_filter_transform(winograd, k);
    taps = at::matmul(at::matmul(g, weight.to(at::kDouble)), g.t()).to(at::kFloat);
  }
  const int64_t t = taps.size(2);
  auto padded = at::zeros({cout_blocks * cb, cin, t, t}, taps.options());
  padded.narrow(0, 0, cout).copy_(taps);
  const auto by_block = padded.view({cout_blocks, cb, cin, t * t});
  if (winograd) return by_block.permute({0, 3, 2, 1}).contiguous();
  return by_block.permute({0, 2, 3, 1}).contiguous().view({cout_blocks, cin, k, k, cb});
}

}  // namespace

at::Tensor conv_direct_pack_cpu(const at::Tensor& weight, bool transposed, int64_t winograd) {
  // G = cout_blocks blocks of CB output channels (the last block zero-padded):
  // conv (Cout, Cin, K, K) -> (G, Cin, K, K, CB);
  // Winograd (Cout, Cin, K, K) -> (G, N * N, Cin, CB), U = G g G^T per channel pair;
  // transposed (Cin, Cout, 4, 4) -> (G, 2 [py], Cin, 2 [row tap], 4 [kx], CB);
  // transposed by Winograd: its 3x3 conv of 4 Cout channels (CB even), packed as Winograd
  const int64_t cout = weight.size(transposed ? 1 : 0), cin = weight.size(transposed ? 0 : 1);
  const Algorithm algo = algorithm(transposed, winograd);
  if (transposed && winograd)
    return pack_conv(transposed_as_conv3x3(weight.to(at::kDouble)), winograd,
                     block_channels(4 * cout, algo));
  const int64_t cb = block_channels(cout, algo), cout_blocks = (cout + cb - 1) / cb;
  if (!transposed) return pack_conv(weight, winograd, cb);
  const auto w = weight.to(at::kFloat);
  auto padded = at::zeros({cin, cout_blocks * cb, 4, 4}, w.options());
  padded.narrow(1, 0, cout).copy_(w);
  // kernel rows of the two taps of each output row parity: py = 0 -> (1, 3), py = 1 -> (2, 0)
  const auto taps = at::tensor({1, 3, 2, 0}, w.options().dtype(at::kLong));
  auto rows = padded.index_select(2, taps).view({cin, cout_blocks, cb, 2, 2, 4});
  // (Cin, G, CB, py, tap, kx) -> (G, py, Cin, tap, kx, CB)
  return rows.permute({1, 3, 0, 4, 5, 2}).contiguous();
}

at::Tensor conv_direct_cpu(const std::vector<at::Tensor>& inputs, const at::Tensor& packed,
                           const c10::optional<at::Tensor>& bias,
                           const c10::optional<at::Tensor>& residual, int64_t cout,
                           int64_t stride, int64_t pad, bool transposed, int64_t winograd,
                           bool relu, const c10::optional<at::Tensor>& out) {
  const auto& first = inputs[0];
  const int64_t n = first.size(0), h = first.size(2), w = first.size(3);
  const int64_t cout_blocks = packed.size(0), cb = packed.size(-1);
  const int64_t k = conv_direct_packed_kernel_size(packed, transposed, winograd);
  const int64_t oh = conv_direct_output_size(h, k, stride, pad, transposed);
  const int64_t ow = conv_direct_output_size(w, k, stride, pad, transposed);
  const Algorithm algo = algorithm(transposed, winograd);
  RowsFn fn = find_kernel(cb, algo, k, stride);
  TORCH_CHECK(fn != nullptr, "conv_direct: no kernel for ",
              transposed ? "a transposed " : (winograd ? "a Winograd " : "a "),
              k, "x", k, " stride ", stride, " convolution with ", cb,
              " channels per block on this CPU (", conv_direct_isa_cpu(), ")");
  at::Tensor result = out ? *out : at::empty({n, cout, oh, ow}, first.options());
  ConvArgs a{};
  a.num_inputs = static_cast<int>(inputs.size());
  for (int i = 0; i < a.num_inputs; ++i) {
    a.in[i] = inputs[i].data_ptr<float>();
    a.in_channels[i] = inputs[i].size(1);
    a.in_batch_stride[i] = inputs[i].stride(0);
  }
  const int64_t cin = input_channels(a);
  a.weight = packed.data_ptr<float>();
  a.bias = bias ? bias->data_ptr<float>() : nullptr;
  a.residual = residual ? residual->data_ptr<float>() : nullptr;
  a.residual_batch_stride = residual ? residual->stride(0) : 0;
  a.out = result.data_ptr<float>();
  a.out_batch_stride = result.stride(0);
  a.in_h = h;
  a.in_w = w;
  a.out_h = oh;
  a.out_w = ow;
  a.pad = pad;
  a.cout = cout;
  a.cout_blocks = cout_blocks;
  a.relu = relu;
  a.stream = result.numel() * static_cast<int64_t>(sizeof(float)) > cpu::kStreamBytes;
  // per thread: direct and transposed, one packed strip (Cin * rows * stride sequences of at
  // most 8 vectors + K floats, padded to whole vectors: at most 9 of 16 floats); Winograd, the
  // ring of N rows of M sequences of T + 1 floats padded to whole vectors (at most T + 16),
  // then N^2 planes of Cin * T transformed inputs (plane_stride) and N^2 * CB * T floats of
  // products (T tiles a strip). The kernels stay within that; the extra vector is a margin.
  // (the transposed conv by Winograd: F(4x4, 3x3) on the input's rows, h of them)
  int64_t buf_size = cin * (transposed ? 2 : k) * stride * (9 * 16) + 16;
  if (winograd) {
    const int64_t n_pts = winograd + (transposed ? 3 : k) - 1, tiles = winograd_strip(cb);
    buf_size = n_pts * cin * winograd * (tiles + 16) +
               n_pts * n_pts * (plane_stride(cin * tiles) + cb * tiles) + 16;
  }
  auto buf = at::empty({at::get_num_threads(), buf_size}, first.options());
  // contiguous row ranges per thread: neighbouring rows share input rows in the cache, and a
  // layer's output rows are read by the next layer's same thread. Each range is walked in
  // kBandsPerRange bands of rows, one after the other (a kernel walks its strips down one band,
  // then the next), which two threads ran faster than whole ranges strip by strip, the strided
  // layers most (docs/benchmarks.md). The outputs are the same: a band's first rows are packed
  // afresh, from the same input.
  // tasks: output rows (Winograd: tile rows of M)
  const int64_t rows = transposed && winograd ? h : oh;
  const int64_t tasks = n * (winograd ? (rows + winograd - 1) / winograd : rows);
  const int64_t least = winograd ? 1 : 2;
  at::parallel_for(0, tasks, least, [&](int64_t b, int64_t e) {
    float* const mine = buf.data_ptr<float>() + at::get_thread_num() * buf_size;
    const int64_t band = std::max(least, (e - b + kBandsPerRange - 1) / kBandsPerRange);
    for (int64_t s = b; s < e; s += band) fn(a, s, std::min(s + band, e), mine);
  });
  return result;
}

}  // namespace mtu
