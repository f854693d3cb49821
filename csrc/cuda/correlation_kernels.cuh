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

// Fused argmax over a kTile x kTile tile of output pixels per block. For each shift, the block
// computes the correlation on the tile plus its smoothing halo into shared memory, then each
// thread box-sums its window (in double, so the sum of <= smooth^2 values is exact in practice and
// ties behave as in the materialised path) and keeps the best shift. Shifts go in increasing
// channel index and only a strictly larger value wins: ties go to the lowest index.
constexpr int kTile = 16;

template <typename scalar_t, typename acc_t>
__global__ void correlation_argmax_kernel(const scalar_t* __restrict__ f1,
                                          const scalar_t* __restrict__ f2,
                                          int64_t* __restrict__ disp, int64_t c, int64_t h,
                                          int64_t w, int64_t d, int r) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* corr = reinterpret_cast<acc_t*>(smem_raw);
  const int span = kTile + 2 * r;
  const int64_t b = blockIdx.z, hw = h * w, side = 2 * d + 1;
  const int64_t ty0 = blockIdx.y * kTile - r, tx0 = blockIdx.x * kTile - r;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int64_t y = blockIdx.y * kTile + threadIdx.y, x = blockIdx.x * kTile + threadIdx.x;
  const scalar_t* f1img = f1 + b * c * hw;
  const scalar_t* f2img = f2 + b * c * hw;

  double best = 0;
  int64_t best_k = 0;
  for (int64_t ch = 0; ch < side * side; ++ch) {
    const int64_t dy = ch / side - d, dx = ch % side - d;
    for (int p = tid; p < span * span; p += kTile * kTile) {
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
    double s = 0;
    for (int v = 0; v <= 2 * r; ++v)
      for (int u = 0; u <= 2 * r; ++u)
        s += static_cast<double>(corr[(threadIdx.y + v) * span + threadIdx.x + u]);
    if (ch == 0 || s > best) {
      best = s;
      best_k = ch;
    }
    __syncthreads();
  }
  if (y < h && x < w) {
    disp[b * 2 * hw + y * w + x] = best_k % side - d;
    disp[b * 2 * hw + hw + y * w + x] = best_k / side - d;
  }
}

}  // namespace cuda
}  // namespace mtu
