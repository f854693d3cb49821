// Declarations of the CPU convolution engine (csrc/conv_cpu/conv_cpu.cpp), the extension
// mtu_toolkit._conv_cpu: direct and Winograd convolutions for CPU inference (see README.md
// beside this file). The argument checks live in bindings.cpp.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace mtu {

// "avx512", "avx2" or "" (none on this CPU).
std::string conv_direct_isa_cpu();
// Use "avx2" (if the CPU has it) or "" (no kernels) instead of the best; "best" restores it.
void conv_direct_use_isa_cpu(const std::string& isa);
// How the AVX-512 kernels of 10 to 13 output channels a block broadcast their weights:
// "embedded" (by each multiply-add) or "registers" (once a weight), the same outputs bit for bit.
std::string conv_direct_broadcasts_cpu();
// Use "embedded" or "registers" instead of the CPU's choice ("auto": registers on AMD CPUs).
void conv_direct_use_broadcasts_cpu(const std::string& mode);
// Where the kernels fetch their next rows and output lines ahead of use: "l1" or "l2" (only);
// the same outputs either way.
std::string conv_direct_prefetch_cpu();
// Use "l1" or "l2" instead of the default ("auto": l1 on every CPU).
void conv_direct_use_prefetch_cpu(const std::string& mode);
// Count the kernels' cycles by phase (process-wide; off by default): pack, input transform,
// products, epilogue (see conv_cpu.cpp).
void conv_phase_timing_cpu(bool on);
// The cycles counted so far by phase, summed over threads (and set to 0 with `reset`).
std::vector<int64_t> conv_phase_cycles_cpu(bool reset);
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

}  // namespace mtu
