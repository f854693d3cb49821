// Python bindings of mtu_toolkit._ext (the motion-compensation ops): argument checks, then
// dispatch by device to the CPU kernels (csrc/cpu) or, when built with CUDA, the CUDA kernels
// (csrc/cuda). The convolution engine is a separate extension (csrc/conv_cpu).
#include <ATen/MemoryOverlap.h>
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

// `out` may not overlap `input`, which the kernel reads while writing it (`why` says how)
void check_no_overlap(const at::Tensor& out, const at::Tensor& input, const char* name,
                      const char* why) {
  const auto overlap = at::get_overlap_status(out, input);
  TORCH_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial,
              "out must not share memory with ", name, " (", why, ")");
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
                              int64_t smooth, const c10::optional<at::Tensor>& workspace) {
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
  if (workspace) {
    TORCH_CHECK(workspace->device().is_cpu() && workspace->scalar_type() == at::kByte &&
                    workspace->is_contiguous(),
                "workspace must be a contiguous uint8 CPU tensor, got ",
                workspace->scalar_type(), " on ", workspace->device());
  }
  return correlation_argmax_cpu(a, b, max_disp, smooth, workspace);
}

at::Tensor normalize_features(const at::Tensor& x, double eps,
                              const c10::optional<at::Tensor>& out) {
  check_features(x, "x");
  TORCH_CHECK(!x.is_cuda(), "normalize_features has a CPU kernel only, got x on ", x.device());
  TORCH_CHECK(eps > 0, "eps must be > 0, got ", eps);
  const auto a = x.contiguous();
  if (!out) return normalize_features_cpu(a, eps, at::empty_like(a));
  TORCH_CHECK(out->sizes() == x.sizes() && out->scalar_type() == x.scalar_type() &&
                  out->device() == x.device() && out->is_contiguous(),
              "out must be a contiguous tensor of x's shape ", x.sizes(), ", dtype ",
              x.scalar_type(), " and device ", x.device(), ", got ", out->sizes(), ", ",
              out->scalar_type(), " on ", out->device());
  check_no_overlap(*out, a, "x", "each value's norm reads all its channels");
  return normalize_features_cpu(a, eps, *out);
}

// The shape matching_features gives features (N, C, H, W) with the displacement range D
std::vector<int64_t> matching_shape(const at::Tensor& x, int64_t max_disp) {
  return {x.size(0), x.size(2), matching_positions(x.size(3), max_disp), x.size(1),
          matching_segments()};
}

at::Tensor matching_features(const at::Tensor& x, int64_t max_disp, double eps,
                             const c10::optional<at::Tensor>& out) {
  check_features(x, "x");
  TORCH_CHECK(!x.is_cuda(), "matching_features has a CPU kernel only, got x on ", x.device());
  TORCH_CHECK(max_disp >= 0, "max_displacement must be >= 0, got ", max_disp);
  TORCH_CHECK(eps > 0, "eps must be > 0, got ", eps);
  const auto a = x.contiguous();
  const auto shape = matching_shape(x, max_disp);
  if (!out) return matching_features_cpu(a, max_disp, eps, at::empty(shape, a.options()));
  TORCH_CHECK(out->sizes() == at::IntArrayRef(shape) && out->scalar_type() == x.scalar_type() &&
                  out->device() == x.device() && out->is_contiguous(),
              "out must be a contiguous tensor of shape ", at::IntArrayRef(shape), ", dtype ",
              x.scalar_type(), " and device ", x.device(), ", got ", out->sizes(), ", ",
              out->scalar_type(), " on ", out->device());
  check_no_overlap(*out, a, "x", "each value's norm reads all its channels");
  return matching_features_cpu(a, max_disp, eps, *out);
}

at::Tensor correlation_argmax_matching(const at::Tensor& m1, const at::Tensor& m2, int64_t width,
                                       int64_t max_disp, int64_t smooth) {
  TORCH_CHECK(max_disp >= 0, "max_displacement must be >= 0, got ", max_disp);
  TORCH_CHECK(smooth <= 1 || smooth % 2 == 1, "smooth must be odd (or <= 1 for none), got ",
              smooth);
  TORCH_CHECK(width >= 0, "width must be >= 0, got ", width);
  for (const auto* m : {&m1, &m2}) {
    const char* name = m == &m1 ? "m1" : "m2";
    TORCH_CHECK(m->dim() == 5 && m->size(2) == matching_positions(width, max_disp) &&
                    m->size(4) == matching_segments(),
                name, " must be (N, H, ", matching_positions(width, max_disp), ", C, ",
                matching_segments(), ") for width ", width, " and max_displacement ", max_disp,
                " (matching_features' layout), got shape ", m->sizes(),
                m->dim() == 5 && m->size(4) != matching_segments()
                    ? ": made on another CPU path (cpu_use_isa), whose layout has other runs; "
                      "make it again with matching_features on this one"
                    : "");
    TORCH_CHECK(m->device().is_cpu() && m->is_contiguous() &&
                    (m->scalar_type() == at::kFloat || m->scalar_type() == at::kDouble),
                name, " must be a contiguous float32 or float64 CPU tensor, got ",
                m->scalar_type(), " on ", m->device());
  }
  TORCH_CHECK(m1.sizes() == m2.sizes() && m1.scalar_type() == m2.scalar_type(),
              "m1 and m2 must have the same shape and dtype, got ", m1.sizes(), " ",
              m1.scalar_type(), " and ", m2.sizes(), " ", m2.scalar_type());
  return correlation_argmax_matching_cpu(m1, m2, width, max_disp, smooth);
}

at::Tensor warp_forward(const at::Tensor& feat, const at::Tensor& disp, int64_t scale,
                        const c10::optional<at::Tensor>& out) {
  check_features(feat, "feat");
  check_disp(disp, feat, scale);
  const auto d = disp.contiguous();
  // the CPU kernel reads channels-last input as it is (the inference layout)
  const bool nhwc = !feat.is_cuda() && feat.is_contiguous(at::MemoryFormat::ChannelsLast);
  const auto f = nhwc ? feat : feat.contiguous();
  // the result's layout: the input's (channels-last on the CPU), else NCHW
  const auto layout = nhwc && !f.is_contiguous() ? at::MemoryFormat::ChannelsLast
                                                 : at::MemoryFormat::Contiguous;
  at::Tensor result;
  if (out) {
    TORCH_CHECK(out->sizes() == feat.sizes() && out->scalar_type() == feat.scalar_type() &&
                    out->device() == feat.device(),
                "out must have feat's shape ", feat.sizes(), ", dtype ", feat.scalar_type(),
                " and device ", feat.device(), ", got ", out->sizes(), ", ",
                out->scalar_type(), " on ", out->device());
    TORCH_CHECK(out->is_contiguous(layout), "out must be contiguous in ",
                layout == at::MemoryFormat::ChannelsLast ? "channels-last" : "NCHW",
                " layout (feat's), got strides ", out->strides());
    check_no_overlap(*out, feat, "feat", "the warp reads feat while writing out");
    result = *out;
  } else {
    result = at::empty_like(f, layout);
  }
  if (f.is_cuda()) {
#ifdef MTU_WITH_CUDA
    return warp_forward_cuda(f, d, scale, result);
#else
    no_cuda();
#endif
  }
  return warp_forward_cpu(f, d, scale, result, out.has_value());
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

}  // namespace mtu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mtu_toolkit compiled motion-compensation ops (see mtu_toolkit.ops)";
#ifdef MTU_WITH_CUDA
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
  m.def("cpu_isa", &mtu::mc_isa_cpu,
        "instruction set of the CPU kernels: 'avx512', 'avx2', 'avx2-nofma' or 'baseline'");
  m.def("cpu_use_isa", &mtu::mc_use_isa_cpu,
        "run the CPU kernels with a lesser instruction set: 'best', 'avx2' or 'baseline' "
        "(process-wide; for tests and benchmarks)", py::arg("isa"));
  m.def("correlation_forward", &mtu::correlation_forward, "cost volume (N, (2D+1)^2, H, W)",
        py::arg("f1"), py::arg("f2"), py::arg("max_displacement"));
  m.def("correlation_backward", &mtu::correlation_backward, "gradients w.r.t. f1 and f2",
        py::arg("grad_out"), py::arg("f1"), py::arg("f2"), py::arg("max_displacement"));
  m.def("correlation_argmax", &mtu::correlation_argmax,
        "fused correlation + box smoothing + argmax -> int64 (N, 2, H, W) (dx, dy)",
        py::arg("f1"), py::arg("f2"), py::arg("max_displacement"), py::arg("smooth"),
        py::arg("workspace") = py::none());
  m.def("normalize_features", &mtu::normalize_features,
        "x / max(L2 norm over channels, eps) per pixel (CPU; into `out` when given)",
        py::arg("x"), py::arg("eps"), py::arg("out") = py::none());
  m.def("matching_features", &mtu::matching_features,
        "the features normalised and laid out for correlation_argmax_matching (CPU): "
        "(N, H, positions, C, segments)",
        py::arg("x"), py::arg("max_displacement"), py::arg("eps"), py::arg("out") = py::none());
  m.def("matching_shape", &mtu::matching_shape,
        "the shape matching_features gives x with max_displacement", py::arg("x"),
        py::arg("max_displacement"));
  m.def("correlation_argmax_matching", &mtu::correlation_argmax_matching,
        "correlation_argmax on two matching_features tensors of features `width` wide",
        py::arg("m1"), py::arg("m2"), py::arg("width"), py::arg("max_displacement"),
        py::arg("smooth"));
  m.def("warp_forward", &mtu::warp_forward,
        "integer displacement warp (into `out` when given: like feat, sharing no memory)",
        py::arg("feat"), py::arg("disp"), py::arg("scale"), py::arg("out") = py::none());
  m.def("warp_backward", &mtu::warp_backward, "gradient of the warp w.r.t. feat",
        py::arg("grad_out"), py::arg("disp"), py::arg("scale"));
}
