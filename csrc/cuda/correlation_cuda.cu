// Launch layer of the CUDA correlation kernels (correlation_kernels.cuh): device guard,
// dtype dispatch (float32, float16, bfloat16, float64; sums in at::opmath_type), current stream.
#include "../mtu_ops.h"
#include "correlation_kernels.cuh"
#include "cuda_utils.cuh"

namespace mtu {

using cuda::blocks_for;
using cuda::kThreads;
using cuda::kTile;

at::Tensor correlation_forward_cuda(const at::Tensor& f1, const at::Tensor& f2,
                                    int64_t max_disp) {
  const c10::cuda::CUDAGuard guard(f1.device());
  const int64_t n = f1.size(0), c = f1.size(1), h = f1.size(2), w = f1.size(3);
  const int64_t side = 2 * max_disp + 1;
  auto out = at::empty({n, side * side, h, w}, f1.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f1.scalar_type(),
                                  "mtu_correlation_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    cuda::correlation_forward_kernel<scalar_t, acc_t>
        <<<blocks_for(out.numel()), kThreads, 0, cuda::current_stream()>>>(
            f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, c, h,
            w, max_disp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> correlation_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& f1,
                                                             const at::Tensor& f2,
                                                             int64_t max_disp) {
  const c10::cuda::CUDAGuard guard(f1.device());
  const int64_t n = f1.size(0), c = f1.size(1), h = f1.size(2), w = f1.size(3);
  auto g1 = at::empty_like(f1);
  auto g2 = at::empty_like(f2);
  if (g1.numel() == 0) return {g1, g2};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f1.scalar_type(),
                                  "mtu_correlation_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    cuda::correlation_backward_kernel<scalar_t, acc_t>
        <<<blocks_for(g1.numel()), kThreads, 0, cuda::current_stream()>>>(
            grad_out.data_ptr<scalar_t>(), f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(),
            g1.data_ptr<scalar_t>(), g2.data_ptr<scalar_t>(), n, c, h, w, max_disp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g1, g2};
}

at::Tensor correlation_argmax_cuda(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                                   int64_t smooth) {
  const c10::cuda::CUDAGuard guard(f1.device());
  const int64_t n = f1.size(0), c = f1.size(1), h = f1.size(2), w = f1.size(3);
  const int64_t side = 2 * max_disp + 1;
  const int r = smooth > 1 ? static_cast<int>(smooth / 2) : 0;
  TORCH_CHECK(r <= 16, "correlation_argmax on CUDA supports smooth <= 33, got ", smooth);
  auto disp = at::empty({n, 2, h, w}, f1.options().dtype(at::kLong));
  if (disp.numel() == 0) return disp;
  TORCH_CHECK(n * side <= 65535, "correlation_argmax on CUDA supports batch x (2D+1) up to "
              "65535, got ", n, " x ", side);
  // each row of shifts' (dy's) winner per pixel: 12 bytes a pixel and row
  auto row_best = at::empty({n * side, h, w}, f1.options().dtype(at::kDouble));
  auto row_k = at::empty({n * side, h, w}, f1.options().dtype(at::kInt));
  const dim3 grid((w + kTile - 1) / kTile, (h + kTile - 1) / kTile, n * side);
  const dim3 block(kTile, kTile);
  const int span = kTile + 2 * r;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f1.scalar_type(),
                                  "mtu_correlation_argmax_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t staged = sizeof(acc_t) * cuda::staged_argmax_elems(r, static_cast<int>(side));
    // the staged kernel where its registers hold every shift and its chunk fits the 48 KB a
    // block may take without opting in
    if (side <= cuda::kMaxSide && r <= cuda::kMaxStagedR && staged <= 48 * 1024) {
      cuda::correlation_argmax_rows_staged_kernel<scalar_t, acc_t>
          <<<grid, block, staged, cuda::current_stream()>>>(
              f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), row_best.data_ptr<double>(),
              row_k.data_ptr<int32_t>(), c, h, w, max_disp, r);
    } else {
      cuda::correlation_argmax_rows_kernel<scalar_t, acc_t>
          <<<grid, block, sizeof(acc_t) * span * span, cuda::current_stream()>>>(
              f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), row_best.data_ptr<double>(),
              row_k.data_ptr<int32_t>(), c, h, w, max_disp, r);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  cuda::correlation_argmax_pick_kernel<<<blocks_for(n * h * w), kThreads, 0,
                                         cuda::current_stream()>>>(
      row_best.data_ptr<double>(), row_k.data_ptr<int32_t>(), disp.data_ptr<int64_t>(), n,
      h * w, max_disp);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return disp;
}

}  // namespace mtu
