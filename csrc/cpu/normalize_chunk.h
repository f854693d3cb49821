// The features' normalisation of float32 pixels, by whole vectors (see
// normalize_features_kernel in correlation_cpu.cpp), written once for any vector width and
// included by correlation_cpu.cpp once per instruction set, inside its namespace and target
// pragma, as correlation_fma.h is. The including namespace provides Vec (a GCC vector type:
// +, * and / work lane by lane), kLanes, loadu, storeu, square_root, max and set1; kNormPixels
// comes from correlation_cpu.cpp. No std:: call here (see csrc/README.md).
//
// x, out: the chunk's first pixel in channel 0 (channels xs and os floats apart); NV vectors
// of pixels (kNormPixels / kLanes for a whole chunk). The sums of squares stay in registers
// while the channels are read for them; the channels are then read again to divide. Every
// step separately rounded, as the portable form (the extension is built with
// -ffp-contract=off: a * a + b is never fused).
template <int NV>
inline void normalize_vectors(const float* x, int64_t xs, float* out, int64_t os, int64_t c,
                              float eps) {
  Vec norm[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    const Vec a = loadu(x + kLanes * v);
    norm[v] = a * a;
  }
  for (int64_t ci = 1; ci < c; ++ci) {
    const float* plane = x + ci * xs;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const Vec a = loadu(plane + kLanes * v);
      norm[v] = norm[v] + a * a;
    }
  }
  // (max gives its second operand where either is NaN: a NaN norm stays NaN, as the clamp of
  // the portable form and of torch leaves it)
  const Vec e = set1(eps);
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) norm[v] = max(e, square_root(norm[v]));
  for (int64_t ci = 0; ci < c; ++ci)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v)
      storeu(out + ci * os + kLanes * v, loadu(x + ci * xs + kLanes * v) / norm[v]);
}

// The first len / kLanes * kLanes pixels of a span of len pixels (returns that count; the
// caller does the rest): whole chunks, then the whole vectors left in blocks of 8, 4, 2, 1
inline int64_t normalize_span(const float* x, int64_t xs, float* out, int64_t os, int64_t c,
                              int64_t len, float eps) {
  constexpr int kChunkVectors = kNormPixels / kLanes;
  int64_t p = 0;
  for (; p + kNormPixels <= len; p += kNormPixels)
    normalize_vectors<kChunkVectors>(x + p, xs, out + p, os, c, eps);
  if constexpr (kChunkVectors > 8) {
    if (len - p >= 8 * kLanes) {
      normalize_vectors<8>(x + p, xs, out + p, os, c, eps);
      p += 8 * kLanes;
    }
  }
  if (len - p >= 4 * kLanes) {
    normalize_vectors<4>(x + p, xs, out + p, os, c, eps);
    p += 4 * kLanes;
  }
  if (len - p >= 2 * kLanes) {
    normalize_vectors<2>(x + p, xs, out + p, os, c, eps);
    p += 2 * kLanes;
  }
  if (len - p >= kLanes) {
    normalize_vectors<1>(x + p, xs, out + p, os, c, eps);
    p += kLanes;
  }
  return p;
}
