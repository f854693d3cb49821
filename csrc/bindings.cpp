// Python bindings of mtu_toolkit._ext: argument checks, then dispatch by device to the CPU
// kernels (csrc/cpu) or, when built with CUDA, the CUDA kernels (csrc/cuda).
#include <torch/extension.h>

#include "mtu_ops.h"

namespace mtu {
namespace {

void check_features(const at::Tensor& f, const char* name) {
  TORCH_CHECK(f.dim() == 4, name, " must be a 4-D (N, C, H, W) tensor, got shape ", f.sizes());
  if (f.is_cuda()) {
    TORCH_CHECK(f.scalar_type() == at::kFloat || f.scalar_type() == at::kHalf ||
                    f.scalar_type() == at::kBFloat16 || f.scalar_type() == at::kDouble,
                name, " on CUDA must be float32, float16, bfloat16 or float64, got ",
                f.scalar_type());
  } else {
    TORCH_CHECK(f.device().is_cpu(), name, " must be on CPU or CUDA, got ", f.device());
    TORCH_CHECK(f.scalar_type() == at::kFloat || f.scalar_type() == at::kDouble, name,
                " on CPU must be float32 or float64, got ", f.scalar_type());
  }
}

void check_pair(const at::Tensor& a, const at::Tensor& b, const char* na, const char* nb) {
  check_features(a, na);
  check_features(b, nb);
  TORCH_CHECK(a.sizes() == b.sizes(), na, " and ", nb, " must have the same shape, got ",
              a.sizes(), " and ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), na, " and ", nb,
              " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), na, " and ", nb, " must be on the same device, got ",
              a.device(), " and ", b.device());
}

void check_disp(const at::Tensor& disp, const at::Tensor& feat, int64_t scale) {
  TORCH_CHECK(scale >= 1, "scale must be >= 1, got ", scale);
  TORCH_CHECK(disp.dim() == 4 && disp.size(0) == feat.size(0) && disp.size(1) == 2,
              "disp must be (N, 2, h, w) with N = feat's batch size ", feat.size(0),
              ", got shape ", disp.sizes());
  TORCH_CHECK(disp.scalar_type() == at::kLong, "disp must be int64, got ", disp.scalar_type());
  TORCH_CHECK(disp.device() == feat.device(), "disp must be on feat's device ", feat.device(),
              ", got ", disp.device());
  const int64_t need_h = (feat.size(2) + scale - 1) / scale;
  const int64_t need_w = (feat.size(3) + scale - 1) / scale;
  TORCH_CHECK(disp.size(2) >= need_h && disp.size(3) >= need_w, "disp's grid ", disp.size(2),
              "x", disp.size(3), " is smaller than feat's ", feat.size(2), "x", feat.size(3),
              " divided by scale ", scale, " (needs at least ", need_h, "x", need_w, ")");
}

[[noreturn]] void no_cuda() {
  TORCH_CHECK(false, "mtu_toolkit._ext was built without CUDA kernels; rebuild with CUDA "
                     "available (or FORCE_CUDA=1): bash tools/install.sh");
}

}  // namespace

at::Tensor correlation_forward(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp) {
  check_pair(f1, f2, "f1", "f2");
  TORCH_CHECK(max_disp >= 0, "max_displacement must be >= 0, got ", max_disp);
  const auto a = f1.contiguous(), b = f2.contiguous();
  if (a.is_cuda()) {
#ifdef MTU_WITH_CUDA
    return correlation_forward_cuda(a, b, max_disp);
#else
    no_cuda();
#endif
  }
  return correlation_forward_cpu(a, b, max_disp);
}

std::tuple<at::Tensor, at::Tensor> correlation_backward(const at::Tensor& grad_out,
                                                        const at::Tensor& f1,
                                                        const at::Tensor& f2, int64_t max_disp) {
  check_pair(f1, f2, "f1", "f2");
  const int64_t side = 2 * max_disp + 1;
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == f1.size(0) &&
                  grad_out.size(1) == side * side && grad_out.size(2) == f1.size(2) &&
                  grad_out.size(3) == f1.size(3),
              "grad_out must be (N, (2D+1)^2, H, W) = (", f1.size(0), ", ", side * side, ", ",
              f1.size(2), ", ", f1.size(3), "), got ", grad_out.sizes());
  const auto g = grad_out.to(f1.scalar_type()).contiguous();
  const auto a = f1.contiguous(), b = f2.contiguous();
  if (a.is_cuda()) {
#ifdef MTU_WITH_CUDA
    return correlation_backward_cuda(g, a, b, max_disp);
#else
    no_cuda();
#endif
  }
  return correlation_backward_cpu(g, a, b, max_disp);
}

at::Tensor correlation_argmax(const at::Tensor& f1, const at::Tensor& f2, int64_t max_disp,
                              int64_t smooth) {
  check_pair(f1, f2, "f1", "f2");
  TORCH_CHECK(max_disp >= 0, "max_displacement must be >= 0, got ", max_disp);
  TORCH_CHECK(smooth <= 1 || smooth % 2 == 1, "smooth must be odd (or <= 1 for none), got ",
              smooth);
  const auto a = f1.contiguous(), b = f2.contiguous();
  if (a.is_cuda()) {
#ifdef MTU_WITH_CUDA
    return correlation_argmax_cuda(a, b, max_disp, smooth);
#else
    no_cuda();
#endif
  }
  return correlation_argmax_cpu(a, b, max_disp, smooth);
}

at::Tensor warp_forward(const at::Tensor& feat, const at::Tensor& disp, int64_t scale) {
  check_features(feat, "feat");
  check_disp(disp, feat, scale);
  const auto d = disp.contiguous();
  // the CPU kernel reads channels-last input as it is (the inference layout)
  const bool nhwc = !feat.is_cuda() && feat.is_contiguous(at::MemoryFormat::ChannelsLast);
  const auto f = nhwc ? feat : feat.contiguous();
  if (f.is_cuda()) {
#ifdef MTU_WITH_CUDA
    return warp_forward_cuda(f, d, scale);
#else
    no_cuda();
#endif
  }
  return warp_forward_cpu(f, d, scale);
}

at::Tensor warp_backward(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale) {
  check_features(grad_out, "grad_out");
  check_disp(disp, grad_out, scale);
  const auto g = grad_out.contiguous(), d = disp.contiguous();
  if (g.is_cuda()) {
#ifdef MTU_WITH_CUDA
    return warp_backward_cuda(g, d, scale);
#else
    no_cuda();
#endif
  }
  return warp_backward_cpu(g, d, scale);
}

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
  TORCH_CHECK(!winograd || (!transposed && (weight.size(2) == 3 || weight.size(2) == 5)),
              "winograd needs a 3x3 or 5x5 convolution weight, got ",
              transposed ? "a transposed one" : "shape ", weight.sizes());
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
  TORCH_CHECK(!(transposed && winograd), "conv_direct: winograd is for plain convolutions");
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
  const int64_t pdim = transposed ? 6 : (winograd ? 4 : 5);
  TORCH_CHECK(packed.dim() == pdim && packed.is_contiguous() &&
                  packed.scalar_type() == at::kFloat &&
                  packed.size(transposed || winograd ? 2 : 1) == cin &&
                  packed.size(0) * packed.size(pdim - 1) >= cout &&
                  (!winograd || packed.size(1) == 16 || packed.size(1) == 36 ||
                   packed.size(1) == 64),
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

}  // namespace mtu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mtu_toolkit compiled motion-compensation ops (see mtu_toolkit.ops)";
#ifdef MTU_WITH_CUDA
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
  m.def("correlation_forward", &mtu::correlation_forward, "cost volume (N, (2D+1)^2, H, W)",
        py::arg("f1"), py::arg("f2"), py::arg("max_displacement"));
  m.def("correlation_backward", &mtu::correlation_backward, "gradients w.r.t. f1 and f2",
        py::arg("grad_out"), py::arg("f1"), py::arg("f2"), py::arg("max_displacement"));
  m.def("correlation_argmax", &mtu::correlation_argmax,
        "fused correlation + box smoothing + argmax -> int64 (N, 2, H, W) (dx, dy)",
        py::arg("f1"), py::arg("f2"), py::arg("max_displacement"), py::arg("smooth"));
  m.def("warp_forward", &mtu::warp_forward, "integer displacement warp", py::arg("feat"),
        py::arg("disp"), py::arg("scale"));
  m.def("warp_backward", &mtu::warp_backward, "gradient of the warp w.r.t. feat",
        py::arg("grad_out"), py::arg("disp"), py::arg("scale"));
  m.def("conv_direct_isa", &mtu::conv_direct_isa_cpu,
        "instruction set of the direct convolution on this CPU (\"\" if none)");
  m.def("conv_direct_use_isa", &mtu::conv_direct_use_isa_cpu,
        "use \"avx2\" or \"\" (none) instead of the best instruction set (\"best\"); weights "
        "must be packed again", py::arg("isa"));
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
  m.def("conv_direct", &mtu::conv_direct,
        "[relu](conv(cat(inputs), weight) + bias) + [residual] (transposed: 4x4, stride 2, pad 1; "
        "winograd = M: the weight packed with the same winograd, stride 1)",
        py::arg("inputs"), py::arg("packed"), py::arg("bias"), py::arg("residual"),
        py::arg("cout"), py::arg("stride"), py::arg("pad"), py::arg("transposed"),
        py::arg("relu"), py::arg("out") = py::none(), py::arg("winograd") = 0);
}
