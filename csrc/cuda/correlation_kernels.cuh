// CUDA kernels of the local correlation, its backward and the fused correlation + box
// smoothing + argmax, templated on the storage type (float, double, c10::Half, c10::BFloat16)
// and the accumulation type (at::opmath_type: float for the half types). Every thread owns
// one output value, so there are no atomics and results are deterministic.
//
// Kernel code only: it needs nothing from torch's CUDA headers, so tests can compile it with
// nvcc even where torch is a CPU build; the launch layer is correlation_cuda.cu.
#pragma once
#include <cstdint>

namespace mtu {
namespace cuda {


// out[n, k, y, x] with k = (dy+D)*(2D+1) + (dx+D); one thread per output value.
template <typename scalar_t, typename acc_t>
__global__ void correlation_forward_kernel(const scalar_t* __restrict__ f1,
                                           const scalar_t* __restrict__ f2,
                                           scalar_t* __restrict__ out, int64_t n, int64_t c,
                                           int64_t h, int64_t w, int64_t d) {
  const int64_t side = 2 * d + 1, k = side * side, hw = h * w, total = n * k * hw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t x = i % w, y = (i / w) % h, ch = (i / hw) % k, b = i / (k * hw);
    const int64_t y2 = y + ch / side - d, x2 = x + ch % side - d;
    acc_t acc = 0;
    if (y2 >= 0 && y2 < h && x2 >= 0 && x2 < w) {
      const scalar_t* a = f1 + b * c * hw + y * w + x;
      const scalar_t* s = f2 + b * c * hw + y2 * w + x2;
      for (int64_t ci = 0; ci < c; ++ci)
        acc += static_cast<acc_t>(a[ci * hw]) * static_cast<acc_t>(s[ci * hw]);
    }
    out[i] = static_cast<scalar_t>(acc);
  }
}

// grad_f1[n,c,y,x] = sum_k g[n,k,y,x] * f2[n,c,y+dy,x+dx]
// grad_f2[n,c,y,x] = sum_k g[n,k,y-dy,x-dx] * f1[n,c,y-dy,x-dx]
template <typename scalar_t, typename acc_t>
__global__ void correlation_backward_kernel(const scalar_t* __restrict__ g,
                                            const scalar_t* __restrict__ f1,
                                            const scalar_t* __restrict__ f2,
                                            scalar_t* __restrict__ g1, scalar_t* __restrict__ g2,
                                            int64_t n, int64_t c, int64_t h, int64_t w,
                                            int64_t d) {
  const int64_t side = 2 * d + 1, k = side * side, hw = h * w, total = n * c * hw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t x = i % w, y = (i / w) % h, b = i / (c * hw);
    const int64_t plane = i - y * w - x;  // (b, ci, 0, 0)
    const scalar_t* gimg = g + b * k * hw;
    acc_t acc1 = 0, acc2 = 0;
    for (int64_t dy = -d; dy <= d; ++dy) {
      for (int64_t dx = -d; dx <= d; ++dx) {
        const int64_t ch = (dy + d) * side + (dx + d);
        const int64_t ya = y + dy, xa = x + dx;  // partner of (y, x) in f2
        if (ya >= 0 && ya < h && xa >= 0 && xa < w)
          acc1 += static_cast<acc_t>(gimg[ch * hw + y * w + x]) *
                  static_cast<acc_t>(f2[plane + ya * w + xa]);
        const int64_t yb = y - dy, xb = x - dx;  // pixel of f1 whose partner is (y, x)
        if (yb >= 0 && yb < h && xb >= 0 && xb < w)
          acc2 += static_cast<acc_t>(gimg[ch * hw + yb * w + xb]) *
                  static_cast<acc_t>(f1[plane + yb * w + xb]);
      }
    }
    g1[i] = static_cast<scalar_t>(acc1);
    g2[i] = static_cast<scalar_t>(acc2);
  }
}

// Fused argmax in two kernels. The first gives each block a kTile x kTile tile of output pixels
// and one row of shifts (one dy, the 2D+1 dx) and writes, per pixel, the row's best shift and
// its box sum: for each shift, the correlation on the tile plus its smoothing halo goes into
// shared memory, then each thread box-sums its window (in double, so the sum of <= smooth^2
// values is exact in practice and ties behave as in the materialised path). A block per
// (tile, dy) rather than per tile fills the GPU: a 180x320 feature has only 240 tiles of 16x16.
// The second kernel takes, per pixel, the best of the 2D+1 rows. Shifts go in increasing
// channel index (dx within a row, rows by dy) and only a strictly larger value wins: ties go to
// the lowest index.
//
// Two forms of the first kernel compute the same sums in the same order. The staged one (2D+1
// <= kMaxSide, smooth <= 2 * kMaxStagedR + 1) copies kChunk channels at a time of the tile's f1
// halo and of the f2 band the row's shifts read into shared memory, and each thread keeps the
// correlation of its halo pixels at every dx in registers: each f1 value is read once for the
// 2D+1 shifts, and global memory is read once per block instead of once per shift. The plain
// one (any D and smooth) reads every product's operands from global memory.
constexpr int kTile = 16;
constexpr int kBlockThreads = kTile * kTile;
constexpr int kMaxSide = 21;   // D <= 10
constexpr int kMaxStagedR = 4;  // smooth <= 9
constexpr int kChunk = 4;
constexpr int kSlots =  // halo pixels a thread owns
    ((kTile + 2 * kMaxStagedR) * (kTile + 2 * kMaxStagedR) + kBlockThreads - 1) / kBlockThreads;

// Shared memory of the staged kernel, in accumulator elements: the channel chunk's f1 halo and
// f2 band, later reused for one shift's correlation on the halo.
__host__ __device__ inline int staged_argmax_elems(int r, int side) {
  const int span = kTile + 2 * r, halo = span * span;
  const int chunk = kChunk * (halo + span * (span + side - 1));
  return chunk > halo ? chunk : halo;
}

// Box sum of the thread's window of `corr` (span x span, the tile plus its halo) in double.
template <typename acc_t>
__device__ inline double box_sum(const acc_t* corr, int span, int r) {
  double s = 0;
  for (int v = 0; v <= 2 * r; ++v)
    for (int u = 0; u <= 2 * r; ++u)
      s += static_cast<double>(corr[(threadIdx.y + v) * span + threadIdx.x + u]);
  return s;
}

template <typename scalar_t, typename acc_t>
__global__ void correlation_argmax_rows_kernel(const scalar_t* __restrict__ f1,
                                               const scalar_t* __restrict__ f2,
                                               double* __restrict__ row_best,
                                               int32_t* __restrict__ row_k, int64_t c, int64_t h,
                                               int64_t w, int64_t d, int r) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* corr = reinterpret_cast<acc_t*>(smem_raw);
  const int span = kTile + 2 * r;
  const int64_t side = 2 * d + 1, hw = h * w;
  const int64_t b = blockIdx.z / side, iy = blockIdx.z % side, dy = iy - d;
  // signed before subtracting: blockIdx is unsigned, and the first tiles' halo starts at -r
  const int64_t ty0 = static_cast<int64_t>(blockIdx.y) * kTile - r;
  const int64_t tx0 = static_cast<int64_t>(blockIdx.x) * kTile - r;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const scalar_t* f1img = f1 + b * c * hw;
  const scalar_t* f2img = f2 + b * c * hw;

  double best = 0;
  int64_t best_ix = 0;
  for (int64_t ix = 0; ix < side; ++ix) {
    const int64_t dx = ix - d;
    for (int p = tid; p < span * span; p += kBlockThreads) {
      const int64_t py = ty0 + p / span, px = tx0 + p % span;
      const int64_t qy = py + dy, qx = px + dx;
      acc_t acc = 0;  // zero outside the frame: the padding of the volume and of f2
      if (py >= 0 && py < h && px >= 0 && px < w && qy >= 0 && qy < h && qx >= 0 && qx < w) {
        for (int64_t ci = 0; ci < c; ++ci)
          acc += static_cast<acc_t>(f1img[ci * hw + py * w + px]) *
                 static_cast<acc_t>(f2img[ci * hw + qy * w + qx]);
      }
      corr[p] = acc;
    }
    __syncthreads();
    const double s = box_sum(corr, span, r);
    if (ix == 0 || s > best) {
      best = s;
      best_ix = ix;
    }
    __syncthreads();
  }
  const int64_t y = ty0 + r + threadIdx.y, x = tx0 + r + threadIdx.x;
  if (y < h && x < w) {
    row_best[blockIdx.z * hw + y * w + x] = best;
    row_k[blockIdx.z * hw + y * w + x] = static_cast<int32_t>(iy * side + best_ix);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void correlation_argmax_rows_staged_kernel(const scalar_t* __restrict__ f1,
                                                      const scalar_t* __restrict__ f2,
                                                      double* __restrict__ row_best,
                                                      int32_t* __restrict__ row_k, int64_t c,
                                                      int64_t h, int64_t w, int64_t d, int r) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* smem = reinterpret_cast<acc_t*>(smem_raw);
  const int span = kTile + 2 * r, halo = span * span;
  const int side = static_cast<int>(2 * d + 1), band_w = span + side - 1, band = span * band_w;
  acc_t* f1s = smem;                 // [kChunk][halo]: f1 on the tile and its halo
  acc_t* f2s = smem + kChunk * halo;  // [kChunk][span][band_w]: f2 at dy, dx = -D .. span-1+D
  acc_t* corr = smem;                // [halo]: one shift's correlation, after the chunks
  const int64_t hw = h * w;
  const int64_t b = blockIdx.z / side, iy = blockIdx.z % side, dy = iy - d;
  const int64_t ty0 = static_cast<int64_t>(blockIdx.y) * kTile - r;
  const int64_t tx0 = static_cast<int64_t>(blockIdx.x) * kTile - r;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const scalar_t* f1img = f1 + b * c * hw;
  const scalar_t* f2img = f2 + b * c * hw;

  acc_t acc[kSlots][kMaxSide];
#pragma unroll
  for (int s = 0; s < kSlots; ++s)
#pragma unroll
    for (int ix = 0; ix < kMaxSide; ++ix) acc[s][ix] = 0;

  for (int64_t c0 = 0; c0 < c; c0 += kChunk) {
    const int cn = static_cast<int>(c - c0 < kChunk ? c - c0 : kChunk);
    // zero outside the frame: a product with a padded value adds exactly 0, as the plain
    // kernel's skipped pairs
    for (int i = tid; i < cn * halo; i += kBlockThreads) {
      const int cc = i / halo, p = i % halo;
      const int64_t py = ty0 + p / span, px = tx0 + p % span;
      f1s[i] = (py >= 0 && py < h && px >= 0 && px < w)
                   ? static_cast<acc_t>(f1img[(c0 + cc) * hw + py * w + px])
                   : acc_t(0);
    }
    for (int i = tid; i < cn * band; i += kBlockThreads) {
      const int cc = i / band, q = i % band;
      const int64_t qy = ty0 + dy + q / band_w, qx = tx0 - d + q % band_w;
      f2s[i] = (qy >= 0 && qy < h && qx >= 0 && qx < w)
                   ? static_cast<acc_t>(f2img[(c0 + cc) * hw + qy * w + qx])
                   : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int p = tid + s * kBlockThreads;
      if (p < halo) {
        const int lx = p % span, ly = p / span;
        for (int cc = 0; cc < cn; ++cc) {
          const acc_t a = f1s[cc * halo + p];
          const acc_t* row = f2s + cc * band + ly * band_w + lx;  // f2 at (py+dy, px-D+ix)
#pragma unroll
          for (int ix = 0; ix < kMaxSide; ++ix)
            if (ix < side) acc[s][ix] += a * row[ix];
        }
      }
    }
    __syncthreads();
  }

  double best = 0;
  int best_ix = 0;
#pragma unroll
  for (int ix = 0; ix < kMaxSide; ++ix) {
    if (ix < side) {  // the same for the whole block: the barriers below are reached by all
#pragma unroll
      for (int s = 0; s < kSlots; ++s) {
        const int p = tid + s * kBlockThreads;
        if (p < halo) corr[p] = acc[s][ix];
      }
      __syncthreads();
      const double sum = box_sum(corr, span, r);
      if (ix == 0 || sum > best) {
        best = sum;
        best_ix = ix;
      }
      __syncthreads();
    }
  }
  const int64_t y = ty0 + r + threadIdx.y, x = tx0 + r + threadIdx.x;
  if (y < h && x < w) {
    row_best[blockIdx.z * hw + y * w + x] = best;
    row_k[blockIdx.z * hw + y * w + x] = static_cast<int32_t>(iy * side + best_ix);
  }
}

// One thread per pixel: the best of its 2D+1 row winners (rows in increasing dy, a later row
// only when strictly larger), written as (dx, dy).
__global__ void correlation_argmax_pick_kernel(const double* __restrict__ row_best,
                                               const int32_t* __restrict__ row_k,
                                               int64_t* __restrict__ disp, int64_t n,
                                               int64_t hw, int64_t d) {
  const int64_t side = 2 * d + 1;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * hw;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = i / hw, pix = i % hw;
    const int64_t first = b * side * hw + pix;
    double best = row_best[first];
    int64_t best_k = row_k[first];
    for (int64_t iy = 1; iy < side; ++iy) {
      const double s = row_best[first + iy * hw];
      if (s > best) {
        best = s;
        best_k = row_k[first + iy * hw];
      }
    }
    disp[b * 2 * hw + pix] = best_k % side - d;
    disp[b * 2 * hw + hw + pix] = best_k / side - d;
  }
}

}  // namespace cuda
}  // namespace mtu
