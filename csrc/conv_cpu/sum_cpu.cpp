// The sum of a layer's inputs into a buffer the caller keeps (mtu_toolkit.deploy.DirectConv2d
// with sum_inputs: the motion layer convolves feat + base, 96 MB at 720p, 26 channels).
//
// One pass over the inputs: each element is the left-to-right sum of its inputs, each add
// rounded (no reassociation, -ffp-contract=off), the values torch.add and add_ give. An output
// larger than cpu::kStreamBytes is written with non-temporal stores of whole 64-byte lines, as
// the engine writes its large outputs: normal stores would first read every line from memory
// (its timings against torch.add, which does, are in docs/benchmarks.md). Smaller outputs
// stay cached for the layer that reads them next.
#include "sum_cpu.h"

#include <ATen/Parallel.h>

#include <cstdint>
#include <string>

#include "../common/cpu_features.h"
#include "../common/streaming.h"
#include "conv_cpu.h"

#ifdef MTU_X86
#include <immintrin.h>
#endif

namespace mtu {
namespace {

// The floats a task adds: a multiple of a 64-byte line, so that every task but the first
// starts on a line of the output where the first does
constexpr int64_t kSumChunk = 16 * 1024;

// Elements [begin, end) of the sum, in plain loops (GCC vectorises them for the baseline)
void sum_plain(const float* const* in, int64_t count, float* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float v = in[0][i] + in[1][i];
    for (int64_t k = 2; k < count; ++k) v = v + in[k][i];
    out[i] = v;
  }
}

#ifdef MTU_X86
// [begin, end) with `begin` on a 64-byte line of out and end - begin a multiple of 16, a line
// at a time: one streamed store a line (AVX-512), or two of 32 bytes, which the CPU combines
__attribute__((target("avx512f"))) void sum_streamed_avx512(const float* const* in,
                                                             int64_t count, float* out,
                                                             int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; i += 16) {
    __m512 v = _mm512_add_ps(_mm512_loadu_ps(in[0] + i), _mm512_loadu_ps(in[1] + i));
    for (int64_t k = 2; k < count; ++k) v = _mm512_add_ps(v, _mm512_loadu_ps(in[k] + i));
    _mm512_stream_ps(out + i, v);
  }
}

__attribute__((target("avx2"))) void sum_streamed_avx2(const float* const* in, int64_t count,
                                                        float* out, int64_t begin,
                                                        int64_t end) {
  for (int64_t i = begin; i < end; i += 16) {
    __m256 lo = _mm256_add_ps(_mm256_loadu_ps(in[0] + i), _mm256_loadu_ps(in[1] + i));
    __m256 hi = _mm256_add_ps(_mm256_loadu_ps(in[0] + i + 8), _mm256_loadu_ps(in[1] + i + 8));
    for (int64_t k = 2; k < count; ++k) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(in[k] + i));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(in[k] + i + 8));
    }
    _mm256_stream_ps(out + i, lo);
    _mm256_stream_ps(out + i + 8, hi);
  }
}
#endif

}  // namespace

at::Tensor sum_inputs_cpu(const std::vector<at::Tensor>& inputs, const at::Tensor& out) {
  const int64_t n = out.numel(), count = static_cast<int64_t>(inputs.size());
  std::vector<const float*> in(count);
  for (int64_t k = 0; k < count; ++k) in[k] = inputs[k].data_ptr<float>();
  float* const dst = out.data_ptr<float>();
  using StreamFn = void (*)(const float* const*, int64_t, float*, int64_t, int64_t);
  StreamFn streamed = nullptr;
#ifdef MTU_X86
  // (the engine's instruction set: "avx2" forced on an AVX-512 CPU takes the AVX2 path)
  if (n * static_cast<int64_t>(sizeof(float)) > cpu::kStreamBytes) {
    const std::string isa = conv_direct_isa_cpu();
    streamed = isa == "avx512" ? sum_streamed_avx512
                               : (isa == "avx2" ? sum_streamed_avx2 : nullptr);
  }
#endif
  // the elements before out's first 64-byte line (none for torch's own allocations)
  const int64_t head =
      std::min<int64_t>(n, (-reinterpret_cast<uintptr_t>(dst) % 64) / sizeof(float));
  sum_plain(in.data(), count, dst, 0, head);
  const int64_t chunks = (n - head + kSumChunk - 1) / kSumChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t lo = head + c * kSumChunk, hi = std::min(n, lo + kSumChunk);
      const int64_t lines_end = streamed ? lo + (hi - lo) / 16 * 16 : lo;
      if (streamed) streamed(in.data(), count, dst, lo, lines_end);
      sum_plain(in.data(), count, dst, lines_end, hi);
    }
#ifdef MTU_X86
    if (streamed) _mm_sfence();  // this thread's streamed lines written before the call returns
#endif
  });
  return out;
}

}  // namespace mtu
