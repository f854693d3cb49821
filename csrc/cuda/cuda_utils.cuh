// Shared helpers of the CUDA kernels. Only c10's CUDA headers are used (not
// ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE headers), so the sources also compile
// where just the CUDA runtime headers are installed.
#pragma once
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace mtu {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `count` items, capped so that huge tensors loop instead.
inline unsigned int blocks_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace cuda
}  // namespace mtu
