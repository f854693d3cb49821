// CPU kernels of the integer displacement warp:
//   out[n,c,y,x] = feat[n,c, y + s*dy, x + s*dx]  with (dx, dy) = disp[n, :, y/s, x/s],
// zero where the source falls outside the frame.
// A displacement covers a run of s pixels of a row, so both passes walk the rows cell by cell:
// one bounds check of the source row per cell, then a short run of contiguous reads and writes.
// The forward finds each output row's runs once (a run: contiguous pixels with contiguous
// sources, or zeros) and copies every channel plane run by run, in tasks of (image, block of
// rows); it writes into a given output (the inference path reuses one buffer a frame, sparing
// the page faults of a fresh ~100 MB tensor). The backward gives each
// (image, channel) plane to one task, so the accumulation into sources shared by several outputs
// needs no atomics and is deterministic.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../mtu_ops.h"

namespace mtu {
namespace {

struct WarpGeometry {
  int64_t n, c, h, w, dh, dw, scale;
};

// Walks output row y of image b cell by cell (one displacement covers `scale` pixels):
// cell(x0, lo, hi, x1, src) for each cell [x0, x1), where the pixels x in [lo, hi) read
// src + x of the source plane and those in [x0, lo) and [hi, x1) have their source outside the
// frame (lo == hi == x1 when the source row is outside).
template <typename Cell>
inline void for_each_cell(const WarpGeometry& g, const int64_t* disp, int64_t b, int64_t y,
                          Cell&& cell) {
  const int64_t* ddx = disp + (b * 2 * g.dh + y / g.scale) * g.dw;
  const int64_t* ddy = ddx + g.dh * g.dw;
  for (int64_t x0 = 0, cell_index = 0; x0 < g.w; x0 += g.scale, ++cell_index) {
    const int64_t x1 = std::min(g.w, x0 + g.scale);
    const int64_t sy = y + g.scale * ddy[cell_index], shift = g.scale * ddx[cell_index];
    if (sy < 0 || sy >= g.h) {
      cell(x0, x1, x1, x1, int64_t{0});
      continue;
    }
    // pixels whose source column is inside: x + shift in [0, w)
    const int64_t lo = std::clamp<int64_t>(-shift, x0, x1);
    const int64_t hi = std::clamp<int64_t>(g.w - shift, lo, x1);
    cell(x0, lo, hi, x1, sy * g.w + shift);
  }
}

// Calls op(x, src_offset_in_plane) for each pixel x of output row y of image b whose source is
// inside the frame; rows/pixels with the source outside are reported to skip(x_begin, x_end).
template <typename Op, typename Skip>
inline void for_each_source(const WarpGeometry& g, const int64_t* disp, int64_t b, int64_t y,
                            Op&& op, Skip&& skip) {
  for_each_cell(g, disp, b, y, [&](int64_t x0, int64_t lo, int64_t hi, int64_t x1, int64_t src) {
    skip(x0, lo);
    for (int64_t x = lo; x < hi; ++x) op(x, src + x);
    skip(hi, x1);
  });
}

// One output row as runs of pixels: dst[x0, x0 + len) = src_plane[from, from + len), or zeros
// where from < 0. The source of a row is the same in every channel plane, and neighbouring
// cells with the same displacement merge, so the runs are found once per row and each plane
// is copied run by run.
struct Run {
  int64_t from;
  int32_t x0, len;
};

// Appends [x0, x1) from `from` to `runs`, merged into the last run when it continues it
// (runs before index `first`, another row's, are left alone).
inline void add_run(std::vector<Run>& runs, size_t first, int64_t x0, int64_t x1, int64_t from) {
  if (x1 <= x0) return;
  if (runs.size() > first) {
    Run& last = runs.back();
    const bool zeros = from < 0 && last.from < 0;
    const bool follows = from >= 0 && last.from >= 0 && last.from + last.len == from;
    if (last.x0 + last.len == x0 && (zeros || follows)) {
      last.len += static_cast<int32_t>(x1 - x0);
      return;
    }
  }
  runs.push_back({from, static_cast<int32_t>(x0), static_cast<int32_t>(x1 - x0)});
}

// Appends the runs of output row y of sample b to `runs`, cell by cell: the pixels of a cell
// whose source column is inside, and zeros for the rest (and for a source row outside).
inline void row_runs(const WarpGeometry& g, const int64_t* disp, int64_t b, int64_t y,
                     std::vector<Run>& runs) {
  const size_t first = runs.size();
  for_each_cell(g, disp, b, y, [&](int64_t x0, int64_t lo, int64_t hi, int64_t x1, int64_t src) {
    add_run(runs, first, x0, lo, -1);
    add_run(runs, first, lo, hi, src + lo);
    add_run(runs, first, hi, x1, -1);
  });
}

// Copies / zeroes a run. A displacement covers `scale` (4) pixels, so most runs of an
// incoherent motion are a few floats long: fixed-size chunks (one vector move each) instead of
// a library call per run.
template <typename T>
inline void copy_run(T* __restrict__ dst, const T* __restrict__ src, int64_t len) {
  if (len >= 64) {
    std::memcpy(dst, src, len * sizeof(T));
    return;
  }
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) std::memcpy(dst + i, src + i, 4 * sizeof(T));
  for (; i < len; ++i) dst[i] = src[i];
}

template <typename T>
inline void zero_run(T* __restrict__ dst, int64_t len) {
  for (int64_t i = 0; i < len; ++i) dst[i] = T(0);
}

// Rows a task: its runs are found once and reused by every channel plane; a block of rows of
// one plane reads a band of ~rows + 2 * max shift source rows, which stays in the cache.
constexpr int64_t kWarpBlockRows = 16;
// Runs ahead whose source is prefetched: an incoherent motion reads each run from another
// line of another row, which the hardware prefetchers cannot guess (3x faster with it).
constexpr size_t kWarpPrefetchRuns = 48;

template <typename T>
void warp_forward_kernel(const T* feat, const int64_t* disp, T* out, const WarpGeometry& g) {
  const int64_t hw = g.h * g.w;
  const int64_t blocks = (g.h + kWarpBlockRows - 1) / kWarpBlockRows;
  at::parallel_for(0, g.n * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Run> runs;
    std::vector<size_t> row_start(kWarpBlockRows + 1);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, y0 = (task % blocks) * kWarpBlockRows;
      const int64_t rows = std::min(kWarpBlockRows, g.h - y0);
      runs.clear();
      for (int64_t i = 0; i < rows; ++i) {
        row_start[i] = runs.size();
        row_runs(g, disp, b, y0 + i, runs);
      }
      row_start[rows] = runs.size();
      const size_t last = runs.size();
      for (int64_t c = 0; c < g.c; ++c) {
        const T* src = feat + (b * g.c + c) * hw;
        T* plane = out + (b * g.c + c) * hw;
        for (int64_t i = 0; i < rows; ++i) {
          T* dst = plane + (y0 + i) * g.w;
          for (size_t k = row_start[i]; k < row_start[i + 1]; ++k) {
            // (the block's runs in order: the next rows of this plane too)
            if (k + kWarpPrefetchRuns < last && runs[k + kWarpPrefetchRuns].from >= 0)
              __builtin_prefetch(src + runs[k + kWarpPrefetchRuns].from);
            const Run& r = runs[k];
            if (r.from < 0)
              zero_run(dst + r.x0, r.len);
            else
              copy_run(dst + r.x0, src + r.from, r.len);
          }
        }
      }
    }
  });
}

template <typename T>
void warp_forward_nhwc_kernel(const T* feat, const int64_t* disp, T* out, const WarpGeometry& g) {
  const int64_t c = g.c, hwc = g.h * g.w * c;
  at::parallel_for(0, g.n * g.h, 4, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t y = row % g.h, b = row / g.h;
      const T* src = feat + b * hwc;
      T* dst = out + b * hwc + y * g.w * c;
      for_each_source(
          g, disp, b, y, [&](int64_t x, int64_t s) { std::copy_n(src + s * c, c, dst + x * c); },
          [&](int64_t x0, int64_t x1) { std::fill(dst + x0 * c, dst + x1 * c, T(0)); });
    }
  });
}

template <typename T>
void warp_backward_kernel(const T* grad_out, const int64_t* disp, T* grad_feat,
                          const WarpGeometry& g) {
  const int64_t hw = g.h * g.w;
  at::parallel_for(0, g.n * g.c, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / g.c;
      T* dst = grad_feat + plane * hw;
      for (int64_t y = 0; y < g.h; ++y) {
        const T* src = grad_out + plane * hw + y * g.w;
        for_each_source(
            g, disp, b, y, [&](int64_t x, int64_t s) { dst[s] += src[x]; },
            [](int64_t, int64_t) {});
      }
    }
  });
}

WarpGeometry geometry(const at::Tensor& feat, const at::Tensor& disp, int64_t scale) {
  return {feat.size(0), feat.size(1), feat.size(2), feat.size(3), disp.size(2), disp.size(3),
          scale};
}

}  // namespace

at::Tensor warp_forward_cpu(const at::Tensor& feat, const at::Tensor& disp, int64_t scale,
                            const at::Tensor& out) {
  const WarpGeometry g = geometry(feat, disp, scale);
  if (out.numel() == 0) return out;
  if (feat.is_contiguous(at::MemoryFormat::ChannelsLast) && !feat.is_contiguous()) {
    AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "mtu_warp_forward_nhwc_cpu", [&] {
      warp_forward_nhwc_kernel<scalar_t>(feat.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(),
                                         out.data_ptr<scalar_t>(), g);
    });
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "mtu_warp_forward_cpu", [&] {
    warp_forward_kernel<scalar_t>(feat.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(),
                                  out.data_ptr<scalar_t>(), g);
  });
  return out;
}

at::Tensor warp_backward_cpu(const at::Tensor& grad_out, const at::Tensor& disp, int64_t scale) {
  auto grad_feat = at::zeros_like(grad_out);
  const WarpGeometry g = geometry(grad_out, disp, scale);
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "mtu_warp_backward_cpu", [&] {
    warp_backward_kernel<scalar_t>(grad_out.data_ptr<scalar_t>(), disp.data_ptr<int64_t>(),
                                   grad_feat.data_ptr<scalar_t>(), g);
  });
  return grad_feat;
}

}  // namespace mtu
