// Declarations of the motion-compensation kernels (CPU in csrc/cpu, CUDA in csrc/cuda).
// The shape and dtype checks live in csrc/bindings.cpp; the kernels assume valid, contiguous
// NCHW inputs on one device. Contracts: shared/spec/DESIGN.md ("Op contracts").
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <tuple>
#include <vector>

namespace mtu {

// f1, f2: (N, C, H, W) -> (N, (2D+1)^2, H, W);
// out[n, (dy+D)*(2D+1) + (dx+D), y, x] = sum_c f1[n,c,y,x] * f2[n,c,y+dy,x+dx] (0 outside).
at::Tensor correlation_forward_cpu(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp);
// grad_out: (N, (2D+1)^2, H, W) -> (grad_f1, grad_f2), both (N, C, H, W).
std::tuple<at::Tensor, at::Tensor> correlation_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& f1,
                                                            const at::Tensor& f2,
                                                            int64_t max_disp);
// Fused correlation + optional smooth x smooth box sum + argmax: int64 (N, 2, H, W) = (dx, dy).
at::Tensor correlation_argmax_cpu(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                                  int64_t smooth);
// feat: (N, C, H, W), disp: int64 (N, 2, h, w) on the grid `scale` times coarser.
at::Tensor warp_forward_cpu(const at::Tensor& feat, const at::Tensor& disp, int64_t scale);
at::Tensor warp_backward_cpu(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale);
// Direct convolutions (csrc/cpu/conv_cpu.cpp): "avx512", "avx2" or "" (none on this CPU).
std::string conv_direct_isa_cpu();
// Use "avx2" (if the CPU has it) or "" (no kernels) instead of the best; "best" restores it.
void conv_direct_use_isa_cpu(const std::string& isa);
// Output height or width of conv_direct for an input `size` (transposed: 4x4, stride 2, pad 1).
int64_t conv_direct_output_size(int64_t size, int64_t k, int64_t stride, int64_t pad,
                                bool transposed);
// Whether a kernel exists for K x K taps at this stride (transposed: 4x4, stride 2, pad 1;
// winograd = M (2 or 4): Winograd F(M x M, K x K), stride 1; 0: direct).
bool conv_direct_supported_cpu(int64_t k, int64_t stride, bool transposed, int64_t winograd);
// weight (Cout, Cin, K, K), or (Cin, Cout, 4, 4) transposed -> packed for this CPU's kernels
// (winograd = M: transformed for the Winograd F(M x M, K x K) kernel).
at::Tensor conv_direct_pack_cpu(const at::Tensor& weight, bool transposed, int64_t winograd);
// K of the layer a packed weight holds.
int64_t conv_direct_packed_kernel_size(const at::Tensor& packed, bool transposed,
                                       int64_t winograd);
// inputs: NCHW float32 (N, C_i, H, W) read as one concatenation; residual like the output.
// -> [relu](conv + bias) + [residual], (N, Cout, OH, OW), into `out` when given.
at::Tensor conv_direct_cpu(const std::vector<at::Tensor>& inputs, const at::Tensor& packed,
                           const c10::optional<at::Tensor>& bias,
                           const c10::optional<at::Tensor>& residual, int64_t cout,
                           int64_t stride, int64_t pad, bool transposed, int64_t winograd,
                           bool relu, const c10::optional<at::Tensor>& out);

#ifdef MTU_WITH_CUDA
at::Tensor correlation_forward_cuda(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp);
std::tuple<at::Tensor, at::Tensor> correlation_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& f1,
                                                             const at::Tensor& f2,
                                                             int64_t max_disp);
at::Tensor correlation_argmax_cuda(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                                   int64_t smooth);
at::Tensor warp_forward_cuda(const at::Tensor& feat, const at::Tensor& disp, int64_t scale);
at::Tensor warp_backward_cuda(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale);
#endif

}  // namespace mtu
