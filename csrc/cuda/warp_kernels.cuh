// CUDA kernels of the integer displacement warp (contract: csrc/cpu/warp_cpu.cpp). The forward
// is a gather (one thread per output value); the backward scatters each output gradient onto its
// source with an atomic add (gpuAtomicAdd, which covers float, double, Half and BFloat16), since
// several outputs may share one source.
//
// Kernel code only (ATen/cuda/Atomic.cuh needs no CUDA build of torch); the launch layer is
// warp_cuda.cu.
#pragma once
#include <ATen/cuda/Atomic.cuh>

#include <cstdint>

namespace mtu {
namespace cuda {


// Offset of the source of output (b, y, x) within its (H, W) plane, or -1 outside the frame.
__device__ __forceinline__ int64_t source_offset(const int64_t* __restrict__ disp, int64_t b,
                                                 int64_t y, int64_t x, int64_t h, int64_t w,
                                                 int64_t dh, int64_t dw, int64_t scale) {
  const int64_t cell = (b * 2 * dh + y / scale) * dw + x / scale;
  const int64_t sy = y + scale * disp[cell + dh * dw], sx = x + scale * disp[cell];
  return (sy >= 0 && sy < h && sx >= 0 && sx < w) ? sy * w + sx : -1;
}

template <typename scalar_t>
__global__ void warp_forward_kernel(const scalar_t* __restrict__ feat,
                                    const int64_t* __restrict__ disp, scalar_t* __restrict__ out,
                                    int64_t n, int64_t c, int64_t h, int64_t w, int64_t dh,
                                    int64_t dw, int64_t scale) {
  const int64_t hw = h * w, total = n * c * hw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pix = i % hw, plane = i / hw, b = plane / c;
    const int64_t src = source_offset(disp, b, pix / w, pix % w, h, w, dh, dw, scale);
    out[i] = src >= 0 ? feat[plane * hw + src] : static_cast<scalar_t>(0);
  }
}

template <typename scalar_t>
__global__ void warp_backward_kernel(const scalar_t* __restrict__ grad_out,
                                     const int64_t* __restrict__ disp,
                                     scalar_t* __restrict__ grad_feat, int64_t n, int64_t c,
                                     int64_t h, int64_t w, int64_t dh, int64_t dw, int64_t scale) {
  const int64_t hw = h * w, total = n * c * hw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t pix = i % hw, plane = i / hw, b = plane / c;
    const int64_t src = source_offset(disp, b, pix / w, pix % w, h, w, dh, dw, scale);
    if (src >= 0) gpuAtomicAdd(grad_feat + plane * hw + src, grad_out[i]);
  }
}

}  // namespace cuda
}  // namespace mtu
