// The sum of a layer's inputs before the layer (csrc/conv_cpu/sum_cpu.cpp), part of the
// extension mtu_toolkit._conv_cpu. The argument checks live in bindings.cpp.
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace mtu {

// out = inputs[0] + inputs[1] + ... (float32 CPU tensors of out's shape, all contiguous),
// added left to right as torch's add and add_ would, so with the same bits; returns out.
at::Tensor sum_inputs_cpu(const std::vector<at::Tensor>& inputs, const at::Tensor& out);

}  // namespace mtu
