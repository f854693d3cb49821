// Launch layer of the CUDA warp kernels (warp_kernels.cuh): device guard, dtype dispatch,
// current stream.
#include "../mtu_ops.h"
#include "cuda_utils.cuh"
#include "warp_kernels.cuh"

namespace mtu {

using cuda::blocks_for;
using cuda::kThreads;

at::Tensor warp_forward_cuda(const at::Tensor& feat, const at::Tensor& disp, int64_t scale,
                             const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(feat.device());
  const int64_t n = feat.size(0), c = feat.size(1), h = feat.size(2), w = feat.size(3);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(),
                                  "mtu_warp_forward_cuda", [&] {
    cuda::warp_forward_kernel<scalar_t>
        <<<blocks_for(out.numel()), kThreads, 0, cuda::current_stream()>>>(
        feat.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), n, c, h, w,
        disp.size(2), disp.size(3), scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor warp_backward_cuda(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale) {
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const int64_t n = grad_out.size(0), c = grad_out.size(1), h = grad_out.size(2),
                w = grad_out.size(3);
  auto grad_feat = at::zeros_like(grad_out);
  if (grad_feat.numel() == 0) return grad_feat;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(),
                                  "mtu_warp_backward_cuda", [&] {
    cuda::warp_backward_kernel<scalar_t>
        <<<blocks_for(grad_out.numel()), kThreads, 0, cuda::current_stream()>>>(
            grad_out.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(),
            grad_feat.data_ptr<scalar_t>(), n, c, h, w, disp.size(2), disp.size(3), scale);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_feat;
}

}  // namespace mtu
