// The fused argmax's AVX2 correlation tiles (csrc/cpu/correlation_fma.h, included here as the
// kernel includes it) against the core's multiply-add peak, in the segmented layout of 8 runs
// a row that the AVX2 kernels use (a position is one vector, tiles of 6 shifts x 2 positions:
// 9 loads for 12 multiply-adds) and in the one of 16 runs they used before (AVX-512's: on
// AVX2 a position is two vectors, tiles of 6 shifts x 1 position, 14 loads for 12), from the
// same plain rows. It first checks that both layouts
// give every pixel and shift the same sum, bit for bit, and that a scalar sum in the same
// order agrees; then it times them in rotated turns, with a loop of 12 independent
// multiply-add chains for the peak, and prints the medians (vector multiply-adds a TSC cycle,
// one thread). x86-64 with AVX2 + FMA; from the repository root:
//
//   g++ -O3 -std=c++17 -o /tmp/correlation_tiles benchmarks/correlation_tiles.cpp
//   /tmp/correlation_tiles [ROWS [REPS [ROUNDS]]]
//
// ROWS: row pairs cycled through (1: 200 KB, they stay in L2; 64: 12.8 MB, from L3 or memory;
// no lines are fetched ahead, unlike the kernel), REPS: calls a turn, ROUNDS: turns of each.
// One row pair is 52 channels of a 320-pixel row (the MTU networks' motion features at 720p),
// D = 10. docs/benchmarks.md has the figures.
#include <immintrin.h>
#include <x86intrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#pragma GCC push_options
#pragma GCC target("avx2,fma")
// The names correlation_fma.h takes from the including namespace (see its header).
#define MTU_TILES_LAYOUT(name, segments, positions)                                   \
  namespace name {                                                                   \
  constexpr int kSegments = segments;                                                \
  using Vec = __m256;                                                                \
  constexpr int kLanes = 8, kMaxShifts = 6, kMaxPositions = positions;               \
  constexpr int kMaxChunk = 1 << 30;                                                 \
  inline Vec zero() { return _mm256_setzero_ps(); }                                  \
  inline Vec loadu(const float* p) { return _mm256_loadu_ps(p); }                    \
  inline void storeu(float* p, Vec v) { _mm256_storeu_ps(p, v); }                    \
  inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
MTU_TILES_LAYOUT(runs16, 16, 1)
#include "../csrc/cpu/correlation_fma.h"
}  // namespace runs16
MTU_TILES_LAYOUT(runs8, 8, 2)
#include "../csrc/cpu/correlation_fma.h"
}  // namespace runs8

// 12 independent chains of multiply-adds, n steps: the core's peak (none waits on another;
// named variables, each its own start value, so that GCC keeps them in registers, apart).
__attribute__((noinline)) uint64_t peak_cycles(int64_t n) {
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
  __m256 a0 = _mm256_set1_ps(0.f), a1 = _mm256_set1_ps(1.f), a2 = _mm256_set1_ps(2.f),
         a3 = _mm256_set1_ps(3.f), a4 = _mm256_set1_ps(4.f), a5 = _mm256_set1_ps(5.f),
         a6 = _mm256_set1_ps(6.f), a7 = _mm256_set1_ps(7.f), a8 = _mm256_set1_ps(8.f),
         a9 = _mm256_set1_ps(9.f), a10 = _mm256_set1_ps(10.f), a11 = _mm256_set1_ps(11.f);
  const uint64_t t0 = __rdtsc();
  for (int64_t k = 0; k < n; ++k) {
#define MTU_TILES_STEP(a) a = _mm256_fmadd_ps(a, x, y);
    MTU_TILES_STEP(a0) MTU_TILES_STEP(a1) MTU_TILES_STEP(a2) MTU_TILES_STEP(a3)
    MTU_TILES_STEP(a4) MTU_TILES_STEP(a5) MTU_TILES_STEP(a6) MTU_TILES_STEP(a7)
    MTU_TILES_STEP(a8) MTU_TILES_STEP(a9) MTU_TILES_STEP(a10) MTU_TILES_STEP(a11)
#undef MTU_TILES_STEP
  }
  const uint64_t t = __rdtsc() - t0;
  const __m256 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  if (s[0] == 12345.f) std::puts("");  // (the chains' results used)
  return t;
}
#pragma GCC pop_options

namespace {
constexpr int64_t kChannels = 52, kWidth = 320, kD = 10, kSide = 2 * kD + 1;

using RowFn = void (*)(const float*, const float*, float* const*, int64_t, int64_t, int64_t,
                       const float*, int64_t);

// Row pairs in one segmented layout: position k of run s holds pixel s * len + k - halo of
// every channel (zero outside the row), as the kernel's to_segments and matching layout.
struct Layout {
  const char* name;
  RowFn correlate;
  int64_t segments, len;
  std::vector<float> a_mem, b_mem, out_mem;
  float *a, *b;              // the row pairs, from a 64-byte line (as the kernel's buffers)
  std::vector<float*> rows;  // the 2D + 1 output rows
  int64_t a_elems() const { return kChannels * len * segments; }
  int64_t b_elems() const { return kChannels * (len + 2 * kD) * segments; }
  // the sum of pixel x, shift j
  float at(int64_t j, int64_t x) const {
    return rows[j][(x % len) * segments + x / len];
  }
  void run(int64_t pair) {
    correlate(a + pair * a_elems(), b + pair * b_elems(), rows.data(), kChannels, len, kD,
              nullptr, 0);
  }
};

void segment(const float* plain, int64_t halo, int64_t positions, int64_t segments, int64_t len,
             float* dst) {
  for (int64_t k = 0; k < positions; ++k)
    for (int64_t c = 0; c < kChannels; ++c)
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t x = s * len + k - halo;
        dst[(k * kChannels + c) * segments + s] =
            x >= 0 && x < kWidth ? plain[c * kWidth + x] : 0.f;
      }
}

// The first element of v that starts a 64-byte line (v has 16 floats to spare for it).
float* line_start(std::vector<float>& v) {
  return v.data() + (-reinterpret_cast<uintptr_t>(v.data()) % 64) / sizeof(float);
}

Layout make_layout(const char* name, RowFn fn, int64_t segments, int64_t pairs,
                   const std::vector<float>& f1, const std::vector<float>& f2) {
  Layout l{name, fn, segments, (kWidth + segments - 1) / segments, {}, {}, {}, nullptr, nullptr,
           {}};
  l.a_mem.resize(pairs * l.a_elems() + 16);
  l.b_mem.resize(pairs * l.b_elems() + 16);
  l.out_mem.resize(kSide * l.len * segments + 16);
  l.a = line_start(l.a_mem);
  l.b = line_start(l.b_mem);
  for (int64_t p = 0; p < pairs; ++p) {
    segment(f1.data() + p * kChannels * kWidth, 0, l.len, segments, l.len, l.a + p * l.a_elems());
    segment(f2.data() + p * kChannels * kWidth, kD, l.len + 2 * kD, segments, l.len,
            l.b + p * l.b_elems());
  }
  for (int64_t j = 0; j < kSide; ++j)
    l.rows.push_back(line_start(l.out_mem) + j * l.len * segments);
  return l;
}

int64_t positive(const char* text, const char* what) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < 1) {
    std::fprintf(stderr, "correlation_tiles: %s must be a positive integer, got '%s'\n", what,
                 text);
    std::exit(2);
  }
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 4) {
    std::fprintf(stderr, "usage: correlation_tiles [ROWS [REPS [ROUNDS]]]\n");
    return 2;
  }
  const int64_t pairs = argc > 1 ? positive(argv[1], "ROWS") : 1;
  const int64_t reps = argc > 2 ? positive(argv[2], "REPS") : 100;
  const int64_t rounds = argc > 3 ? positive(argv[3], "ROUNDS") : 31;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "correlation_tiles: this CPU has no AVX2 + FMA\n");
    return 2;
  }
  std::vector<float> f1(pairs * kChannels * kWidth), f2(f1.size());
  std::srand(0);
  for (float& v : f1) v = std::rand() / float(RAND_MAX) - 0.5f;
  for (float& v : f2) v = std::rand() / float(RAND_MAX) - 0.5f;
  std::vector<Layout> layouts;
  layouts.push_back(make_layout("16 runs, 6 x 1 (before)", runs16::correlate_row_fma, 16, pairs,
                                f1, f2));
  layouts.push_back(make_layout("8 runs, 6 x 2 (the kernel's)", runs8::correlate_row_fma, 8,
                                pairs, f1, f2));

  // the same sums: both layouts bit for bit, and a scalar sum in channel order (one rounding a
  // term, as the tiles' multiply-adds) for the first pair
  for (Layout& l : layouts) l.run(0);
  for (int64_t j = 0; j < kSide; ++j)
    for (int64_t x = 0; x < kWidth; ++x) {
      float ref = 0.f;
      for (int64_t c = 0; c < kChannels; ++c) {
        const int64_t xs = x + j - kD;
        const float b = xs >= 0 && xs < kWidth ? f2[c * kWidth + xs] : 0.f;
        ref = std::fma(f1[c * kWidth + x], b, ref);
      }
      const float u = layouts[0].at(j, x), v = layouts[1].at(j, x);
      if (std::memcmp(&u, &v, sizeof u) != 0 || u != ref) {
        std::fprintf(stderr,
                     "correlation_tiles: shift %lld, pixel %lld: 16 runs %.9g, 8 runs %.9g, "
                     "scalar %.9g\n",
                     (long long)(j - kD), (long long)x, u, v, ref);
        return 1;
      }
    }
  std::printf("same sums: both layouts equal the scalar sums bit for bit (%lld shifts x %lld "
              "pixels)\n", (long long)kSide, (long long)kWidth);

  // rotated turns: the peak loop and each layout, `reps` calls a turn
  const int n = int(layouts.size()) + 1;
  const int64_t peak_steps = reps * kSide * kChannels * kWidth / 8 / 12;  // as many multiply-adds
  std::vector<std::vector<double>> cycles(n);
  for (int64_t r = 0; r < rounds; ++r)
    for (int i = 0; i < n; ++i) {
      const int which = int((i + r) % n);
      if (which == 0) {
        cycles[0].push_back(double(peak_cycles(peak_steps)));
        continue;
      }
      Layout& l = layouts[which - 1];
      const uint64_t t0 = __rdtsc();
      for (int64_t k = 0; k < reps; ++k) l.run(k % pairs);
      cycles[which].push_back(double(__rdtsc() - t0));
    }
  const double fmas = double(reps) * kSide * kChannels * kWidth / 8;  // vector multiply-adds
  const double peak = double(peak_steps) * 12 / median(cycles[0]);
  std::printf("row pairs %lld, %lld calls a turn, %lld turns (medians, one thread)\n",
              (long long)pairs, (long long)reps, (long long)rounds);
  std::printf("%-32s %8.3f vector multiply-adds a TSC cycle\n", "peak (12 independent chains)",
              peak);
  for (int i = 1; i < n; ++i) {
    const double rate = fmas / median(cycles[i]);
    std::printf("%-32s %8.3f vector multiply-adds a TSC cycle, %.2f of the peak, %.3fx the "
                "time of 16 runs\n",
                layouts[i - 1].name, rate, rate / peak, median(cycles[i]) / median(cycles[1]));
  }
  return 0;
}
