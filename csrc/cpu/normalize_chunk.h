// The features' normalisation of one whole chunk of kNormPixels float32 pixels (see
// normalize_features_kernel in correlation_cpu.cpp), written once for any vector width and
// included by correlation_cpu.cpp once per instruction set, inside its namespace and target
// pragma, as correlation_fma.h is. The including namespace provides Vec (a GCC vector type:
// +, * and / work lane by lane), kLanes, loadu, storeu, square_root, max and set1; kNormPixels
// comes from correlation_cpu.cpp. No std:: call here (see csrc/README.md).
//
// x, out: the chunk's first pixel in channel 0 (channels hw apart). The sums of squares stay
// in registers (kNormPixels / kLanes of them) while the channels are read for them; the
// channels are then read again to divide. Every step separately rounded, as the portable form
// (the extension is built with -ffp-contract=off: a * a + b is never fused).
inline void normalize_chunk(const float* x, float* out, int64_t c, int64_t hw, float eps) {
  constexpr int NV = kNormPixels / kLanes;
  Vec norm[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    const Vec a = loadu(x + kLanes * v);
    norm[v] = a * a;
  }
  for (int64_t ci = 1; ci < c; ++ci) {
    const float* plane = x + ci * hw;
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
      storeu(out + ci * hw + kLanes * v, loadu(x + ci * hw + kLanes * v) / norm[v]);
}
