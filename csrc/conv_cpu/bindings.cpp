// Python bindings of mtu_toolkit._conv_cpu, the CPU convolution engine: argument checks, then
// the kernels of conv_cpu.cpp. Used through mtu_toolkit.deploy.DirectConv2d.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "conv_cpu.h"
#include "sum_cpu.h"

namespace mtu {

// A plane-contiguous float32 CPU tensor (N, C, H, W): channel, row and pixel strides dense,
// any batch stride (so window[:, i] of an (N, 5, 3, H, W) clip is read in place).
void check_planes(const at::Tensor& t, const std::string& name) {
  TORCH_CHECK(t.dim() == 4, name, " must be a 4-D (N, C, H, W) tensor, got shape ", t.sizes());
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, name,
              " must be a float32 CPU tensor, got ", t.scalar_type(), " on ", t.device());
  TORCH_CHECK(t.stride(3) == 1 && t.stride(2) == t.size(3) &&
                  t.stride(1) == t.size(2) * t.size(3),
              name, " must be contiguous within each sample (NCHW), got strides ", t.strides());
}

void check_winograd_tile(int64_t winograd) {
  TORCH_CHECK(winograd == 0 || winograd == 2 || winograd == 4,
              "winograd must be the output tile 2 or 4 (F(2x2, KxK), F(4x4, KxK)) or 0 (none), "
              "got ", winograd);
}

at::Tensor conv_direct_pack(const at::Tensor& weight, bool transposed, int64_t winograd) {
  check_winograd_tile(winograd);
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == weight.size(3) &&
                  (transposed ? weight.size(2) == 4 : weight.size(2) % 2 == 1),
              "weight must be (Cout, Cin, K, K) with K odd, or (Cin, Cout, 4, 4) transposed, got "
              "shape ", weight.sizes());
  if (transposed) {
    TORCH_CHECK(!winograd || winograd == 4, "a transposed conv runs Winograd F(4x4, 3x3) "
                "only (winograd=4), got winograd=", winograd);
  } else {
    TORCH_CHECK(!winograd || weight.size(2) == 3 || weight.size(2) == 5,
                "winograd needs a 3x3 or 5x5 convolution weight, got shape ", weight.sizes());
  }
  TORCH_CHECK(weight.device().is_cpu(), "weight must be on the CPU, got ", weight.device());
  TORCH_CHECK(!conv_direct_isa_cpu().empty(),
              "conv_direct needs a CPU with AVX2 and FMA or AVX-512");
  return conv_direct_pack_cpu(weight, transposed, winograd);
}

at::Tensor conv_direct(const std::vector<at::Tensor>& inputs, const at::Tensor& packed,
                       const c10::optional<at::Tensor>& bias,
                       const c10::optional<at::Tensor>& residual, int64_t cout, int64_t stride,
                       int64_t pad, bool transposed, bool relu,
                       const c10::optional<at::Tensor>& out, int64_t winograd) {
  check_winograd_tile(winograd);
  TORCH_CHECK(!transposed || !winograd || winograd == 4,
              "conv_direct: a transposed conv runs Winograd F(4x4, 3x3) only (winograd=4), got "
              "winograd=", winograd);
  TORCH_CHECK(!inputs.empty() && inputs.size() <= 8, "conv_direct takes 1 to 8 inputs, got ",
              inputs.size());
  int64_t cin = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "inputs[" + std::to_string(i) + "]";
    check_planes(inputs[i], name);
    TORCH_CHECK(inputs[i].size(0) == inputs[0].size(0) && inputs[i].size(2) == inputs[0].size(2) &&
                    inputs[i].size(3) == inputs[0].size(3),
                name, " must have inputs[0]'s batch and size ", inputs[0].sizes(), ", got ",
                inputs[i].sizes());
    cin += inputs[i].size(1);
  }
  // (the transposed conv by Winograd: a 3x3 conv of 4 Cout channels, packed as Winograd)
  const int64_t pdim = winograd ? 4 : (transposed ? 6 : 5);
  TORCH_CHECK(packed.dim() == pdim && packed.is_contiguous() &&
                  packed.scalar_type() == at::kFloat &&
                  packed.size(transposed || winograd ? 2 : 1) == cin &&
                  packed.size(0) * packed.size(pdim - 1) >=
                      (transposed && winograd ? 4 : 1) * cout &&
                  (!winograd || (transposed ? packed.size(1) == 36
                                            : packed.size(1) == 16 || packed.size(1) == 36 ||
                                                  packed.size(1) == 64)),
              "packed weight must be conv_direct_pack's for ", cin, " input and ", cout,
              " output channels", winograd ? " (winograd=" + std::to_string(winograd) + ")" : "",
              ", got shape ", packed.sizes());
  const int64_t k = conv_direct_packed_kernel_size(packed, transposed, winograd);
  TORCH_CHECK(transposed ? stride == 2 && pad == 1
                         : stride >= 1 && pad >= 0 && pad < k && (!winograd || stride == 1) &&
                               (k == 3 || k == 5 || !winograd),
              "conv_direct: stride ", stride, " and padding ", pad, " are not supported for a ",
              transposed ? "transposed " : (winograd ? "Winograd " : ""), k, "x", k, " kernel");
  TORCH_CHECK(conv_direct_supported_cpu(k, stride, transposed, winograd),
              "conv_direct has no ", winograd ? "Winograd " : "", "kernel for ", k, "x", k,
              " stride ", stride, " on this CPU");
  const int64_t h = inputs[0].size(2), w = inputs[0].size(3);
  TORCH_CHECK(transposed || (h + 2 * pad >= k && w + 2 * pad >= k), "inputs of ", h, "x", w,
              " are smaller than the ", k, "x", k, " kernel with padding ", pad);
  const int64_t oh = conv_direct_output_size(h, k, stride, pad, transposed);
  const int64_t ow = conv_direct_output_size(w, k, stride, pad, transposed);
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == cout && bias->is_contiguous() &&
                    bias->scalar_type() == at::kFloat,
                "bias must be a contiguous float32 (", cout, ",), got ", bias->sizes());
  }
  if (residual) {
    check_planes(*residual, "residual");
    TORCH_CHECK(residual->size(0) == inputs[0].size(0) && residual->size(1) == cout &&
                    residual->size(2) == oh && residual->size(3) == ow,
                "residual must be (", inputs[0].size(0), ", ", cout, ", ", oh, ", ", ow,
                "), got ", residual->sizes());
  }
  if (out) {
    // the residual may be the output itself (each element is read before it is written), the
    // inputs may not (other output pixels read them later)
    TORCH_CHECK(out->is_contiguous() && out->scalar_type() == at::kFloat &&
                    out->device().is_cpu() && out->dim() == 4 &&
                    out->size(0) == inputs[0].size(0) && out->size(1) == cout &&
                    out->size(2) == oh && out->size(3) == ow,
                "out must be a contiguous float32 CPU tensor (", inputs[0].size(0), ", ", cout,
                ", ", oh, ", ", ow, "), got ", out->sizes());
    for (const auto& t : inputs)
      TORCH_CHECK(!out->is_alias_of(t), "out must not share memory with the inputs");
  }
  return conv_direct_cpu(inputs, packed, bias, residual, cout, stride, pad, transposed, winograd,
                         relu, out);
}

at::Tensor sum_inputs(const std::vector<at::Tensor>& inputs, const at::Tensor& out) {
  TORCH_CHECK(inputs.size() >= 2 && inputs.size() <= 8, "sum_inputs takes 2 to 8 inputs, got ",
              inputs.size());
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == at::kFloat && out.is_contiguous(),
              "out must be a contiguous float32 CPU tensor, got ", out.scalar_type(), " on ",
              out.device());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& t = inputs[i];
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
                    t.sizes() == out.sizes(),
                "inputs[", i, "] must be a contiguous float32 CPU tensor of out's shape ",
                out.sizes(), ", got ", t.scalar_type(), " ", t.sizes(), " on ", t.device());
    TORCH_CHECK(!out.is_alias_of(t), "out must not share memory with the inputs");
  }
  return sum_inputs_cpu(inputs, out);
}

}  // namespace mtu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mtu_toolkit CPU convolution engine (see mtu_toolkit.deploy.DirectConv2d)";
  m.def("conv_direct_isa", &mtu::conv_direct_isa_cpu,
        "instruction set of the direct convolution on this CPU (\"\" if none)");
  m.def("conv_direct_use_isa", &mtu::conv_direct_use_isa_cpu,
        "use \"avx2\" or \"\" (none) instead of the best instruction set (\"best\"); weights "
        "must be packed again", py::arg("isa"));
  m.def("conv_direct_broadcasts", &mtu::conv_direct_broadcasts_cpu,
        "how the AVX-512 kernels of 10 to 13 output channels a block broadcast their weights: "
        "\"embedded\" (by each multiply-add) or \"registers\" (the same outputs bit for bit)");
  m.def("conv_direct_use_broadcasts", &mtu::conv_direct_use_broadcasts_cpu,
        "use \"embedded\" or \"registers\" broadcasts instead of the CPU's choice (\"auto\": "
        "registers on AMD CPUs, embedded on others)", py::arg("mode"));
  m.def("conv_direct_prefetch", &mtu::conv_direct_prefetch_cpu,
        "the cache the kernels fetch their next input rows and output lines into ahead of use: "
        "\"l1\" (prefetcht0) or \"l2\" (prefetcht1; the same outputs bit for bit)");
  m.def("conv_direct_use_prefetch", &mtu::conv_direct_use_prefetch_cpu,
        "fetch ahead into \"l1\" or \"l2\" instead of the default (\"auto\": l1)",
        py::arg("mode"));
  m.def("conv_phase_timing", &mtu::conv_phase_timing_cpu,
        "count the kernels' cycles by phase (process-wide, off by default)", py::arg("on"));
  m.def("conv_phase_cycles", &mtu::conv_phase_cycles_cpu,
        "cycles counted by phase so far, summed over threads: [pack, input transform, products, "
        "epilogue] (reset: set them to 0)",
        py::arg("reset") = true);
  m.def("conv_direct_output_size", &mtu::conv_direct_output_size,
        "output height or width of conv_direct for an input size", py::arg("size"),
        py::arg("k"), py::arg("stride"), py::arg("pad"), py::arg("transposed"));
  m.def("conv_direct_supported", &mtu::conv_direct_supported_cpu,
        "whether conv_direct has a kernel for K x K taps at this stride on this CPU (winograd = "
        "M: the Winograd F(MxM, KxK) kernel, M = 2 or 4, stride 1)",
        py::arg("k"), py::arg("stride"), py::arg("transposed"), py::arg("winograd") = 0);
  m.def("conv_direct_pack", &mtu::conv_direct_pack,
        "pack a (Cout, Cin, K, K) weight, or a transposed conv's (Cin, Cout, 4, 4), for "
        "conv_direct (winograd = M: transformed for the Winograd F(MxM, KxK) kernel, M = 2 or "
        "4, K = 3 or 5)",
        py::arg("weight"), py::arg("transposed"), py::arg("winograd") = 0);
  m.def("sum_inputs", &mtu::sum_inputs,
        "out = inputs[0] + inputs[1] + ... (2 to 8 float32 tensors of out's shape), added in "
        "order; a large out written with non-temporal stores",
        py::arg("inputs"), py::arg("out"));
  m.def("conv_direct", &mtu::conv_direct,
        "[relu](conv(cat(inputs), weight) + bias) + [residual] (transposed: 4x4, stride 2, pad 1; "
        "winograd = M: the weight packed with the same winograd, stride 1)",
        py::arg("inputs"), py::arg("packed"), py::arg("bias"), py::arg("residual"),
        py::arg("cout"), py::arg("stride"), py::arg("pad"), py::arg("transposed"),
        py::arg("relu"), py::arg("out") = py::none(), py::arg("winograd") = 0);
}
