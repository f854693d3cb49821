// Declarations of the motion-compensation kernels (CPU in csrc/cpu, CUDA in csrc/cuda), the
// extension mtu_toolkit._ext. The shape and dtype checks live in csrc/bindings.cpp; the kernels
// assume valid, contiguous NCHW inputs on one device. The contracts are the docstrings of
// mtu_toolkit/ops/functions.py (and their references in mtu_toolkit/ops/reference.py).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace mtu {

// The instruction set of the CPU kernels ("avx512", "avx2", "avx2-nofma" or "baseline"), and
// the choice of a lesser one ("best", "avx2", "baseline"; for tests, process-wide).
std::string mc_isa_cpu();
void mc_use_isa_cpu(const std::string& isa);
// f1, f2: (N, C, H, W) -> (N, (2D+1)^2, H, W);
// out[n, (dy+D)*(2D+1) + (dx+D), y, x] = sum_c f1[n,c,y,x] * f2[n,c,y+dy,x+dx] (0 outside).
at::Tensor correlation_forward_cpu(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp);
// grad_out: (N, (2D+1)^2, H, W) -> (grad_f1, grad_f2), both (N, C, H, W).
std::tuple<at::Tensor, at::Tensor> correlation_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& f1,
                                                            const at::Tensor& f2,
                                                            int64_t max_disp);
// Fused correlation + optional smooth x smooth box sum + argmax: int64 (N, 2, H, W) = (dx, dy).
// workspace: a contiguous uint8 CPU tensor kept by the caller, grown (resize_) to the scratch the
// call needs; without one the call allocates its own.
at::Tensor correlation_argmax_cpu(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                                  int64_t smooth, const c10::optional<at::Tensor>& workspace);
// x: (N, C, H, W) -> out (like x, sharing no memory with it) = x / max(||x||_2 over C, eps) at
// every pixel, by the steps of mtu_toolkit.ops.normalize_features_reference, each rounded as
// IEEE arithmetic does (the same bits on every path).
at::Tensor normalize_features_cpu(const at::Tensor& x, double eps, const at::Tensor& out);
// The motion features as the fused argmax reads them: x (N, C, H, W) normalised as
// normalize_features_cpu does, each row in the argmax's segmented layout with D positions of
// halo: out (N, H, matching_positions(W, D), C, matching_segments()), sharing no memory with x.
int64_t matching_segments();
int64_t matching_positions(int64_t w, int64_t max_disp);
at::Tensor matching_features_cpu(const at::Tensor& x, int64_t max_disp, double eps,
                                 const at::Tensor& out);
// correlation_argmax_cpu on two such tensors (of features W wide, the same D): the same result
// as on the normalised features they hold, without copying their rows.
at::Tensor correlation_argmax_matching_cpu(const at::Tensor& m1, const at::Tensor& m2,
                                           int64_t w, int64_t max_disp, int64_t smooth);
// feat: (N, C, H, W), disp: int64 (N, 2, h, w) on the grid `scale` times coarser; the result
// is written into `out` (like feat, in feat's layout, sharing no memory with it) and returned;
// kept_out: `out` is the caller's buffer, not one just allocated for this call.
at::Tensor warp_forward_cpu(const at::Tensor& feat, const at::Tensor& disp, int64_t scale,
                            const at::Tensor& out, bool kept_out);
at::Tensor warp_backward_cpu(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale);
#ifdef MTU_WITH_CUDA
at::Tensor correlation_forward_cuda(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp);
std::tuple<at::Tensor, at::Tensor> correlation_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& f1,
                                                             const at::Tensor& f2,
                                                             int64_t max_disp);
at::Tensor correlation_argmax_cuda(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                                   int64_t smooth);
at::Tensor warp_forward_cuda(const at::Tensor& feat, const at::Tensor& disp, int64_t scale,
                             const at::Tensor& out);
at::Tensor warp_backward_cuda(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale);
#endif

}  // namespace mtu
