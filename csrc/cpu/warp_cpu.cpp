// CPU kernels of the integer displacement warp:
//   out[n,c,y,x] = feat[n,c, y + s*dy, x + s*dx]  with (dx, dy) = disp[n, :, y/s, x/s],
// zero where the source falls outside the frame.
// A displacement covers a cell of s pixels of a row. The forward makes one table of the cells'
// source offsets per call and copies every channel plane cell by cell from it (a cell of the
// network's s = 4 is one vector move), into a given output when there is one (the inference
// path reuses one buffer a frame, sparing the page faults of a fresh ~100 MB tensor; on x86,
// one larger than the cache is written past it, a 64-byte line at a time). The
// backward gives each (image, channel) plane to one task, so the accumulation into sources
// shared by several outputs needs no atomics and is deterministic.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../common/cpu_features.h"
#include "../common/streaming.h"
#include "../mtu_ops.h"

#ifdef MTU_X86
#include <immintrin.h>
#endif

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

// The forward copies each channel plane cell by cell from one table of source offsets, made
// once per call (the source of a cell is the same in every plane): entry (b, y, k) is where,
// in the plane, the source of cell k of output row y starts when the whole cell's source is
// inside the frame, and -1 otherwise (a border cell, copied pixel by pixel). The table's
// offsets are 32-bit when a plane has fewer than 2^31 values, which halves its traffic.
template <typename I>
void cell_table(const WarpGeometry& g, const int64_t* disp, I* table) {
  const int64_t cells = (g.w + g.scale - 1) / g.scale;
  at::parallel_for(0, g.n * g.h, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      I* entry = table + row * cells;
      for_each_cell(g, disp, row / g.h, row % g.h,
                    [&](int64_t x0, int64_t lo, int64_t hi, int64_t x1, int64_t src) {
                      const bool whole = lo == x0 && hi == x1 && x1 - x0 == g.scale;
                      *entry++ = whole ? static_cast<I>(src + x0) : I(-1);
                    });
    }
  });
}

// Output row y of sample b's cell k: its pixels from the source, zeros where that is outside.
template <typename T>
inline void copy_border_cell(const WarpGeometry& g, const int64_t* disp, int64_t b, int64_t y,
                             int64_t k, const T* src, T* dst) {
  const int64_t* ddx = disp + (b * 2 * g.dh + y / g.scale) * g.dw;
  const int64_t* ddy = ddx + g.dh * g.dw;
  const int64_t x0 = k * g.scale, x1 = std::min(g.w, x0 + g.scale);
  const int64_t sy = y + g.scale * ddy[k], shift = g.scale * ddx[k];
  const bool row_inside = sy >= 0 && sy < g.h;
  for (int64_t x = x0; x < x1; ++x) {
    const int64_t sx = x + shift;
    dst[x] = row_inside && sx >= 0 && sx < g.w ? src[sy * g.w + sx] : T(0);
  }
}

// Rows a task; tasks run (image, plane, block of rows) in order, so a thread walks each plane
// top to bottom and the band of source rows the motion reaches (y +- scale * D: ~400 KB of a
// 720p plane for D = 10) stays in its cache from one row to the next.
constexpr int64_t kWarpBlockRows = 16;
// Cells ahead whose source is prefetched: an incoherent motion reads each cell from another
// line of another row, which the hardware prefetchers cannot guess (1.5x faster with it).
constexpr int64_t kWarpPrefetchCells = 64;

// How many rows below an output row its plane's band of sources ends, plus two: the row
// prefetched while that output row is written, so that a source row is in the cache before the
// first of the randomly placed cells that read it (what hardware prefetchers cannot guess; the
// cell prefetch above then only brings lines from L2 to L1). scale * max |dy| over the motion.
int64_t source_lead_rows(const WarpGeometry& g, const int64_t* disp) {
  int64_t max_dy = 0;
  for (int64_t b = 0; b < g.n; ++b) {
    const int64_t* dy = disp + (b * 2 + 1) * g.dh * g.dw;
    for (int64_t i = 0; i < g.dh * g.dw; ++i) max_dy = std::max(max_dy, std::abs(dy[i]));
  }
  return g.scale * max_dy + 2;
}

// The source row entering the band (source_lead_rows below the output row), prefetched a line
// at a time as the output row's cells are written: the whole row at once (80 lines at 720p),
// each line a miss to memory, filled the CPU's miss buffers and stalled the cell loop behind
// it (docs/benchmarks.md, the Zen 4 section of 2026-12-03).
template <typename T>
struct LeadRow {
  const T* row;  // nullptr past the plane's last rows
  int64_t w, next = 0;
  // the lines of columns next .. x of the row
  inline void upto(int64_t x) {
    if (row == nullptr) return;
    for (; next < w && next <= x; next += 64 / sizeof(T)) __builtin_prefetch(row + next);
  }
};

// Whether the output is written with non-temporal stores, a 64-byte line (4 cells of 4 floats)
// at a time: an output the caller keeps (the operating system zeroes a fresh one's pages as
// they are first written, so its lines are cached already) larger than the cache, whose lines
// normal stores would each read from memory first, in rows of whole 64-byte lines.
template <typename T, int S>
bool streams_lines(const T* out, const WarpGeometry& g, bool kept_out) {
#ifdef MTU_X86
  return std::is_same_v<T, float> && S == 4 && kept_out && g.w % 16 == 0 &&
         reinterpret_cast<uintptr_t>(out) % 64 == 0 &&
         g.n * g.c * g.h * g.w * static_cast<int64_t>(sizeof(T)) > cpu::kStreamBytes;
#else
  return false;
#endif
}

#ifdef MTU_X86
// Output row `dst` (cells of 4 floats, 64-byte aligned) from its cell table `entry`: every line
// of four whole cells in four back-to-back non-temporal stores (SSE, part of every x86-64 CPU;
// the CPU combines them into one line write, as fast as one AVX-512 store here); a line with a
// border cell (entry -1) cell by cell, copy_cell(k) writing cell k as the unstreamed rows do.
template <typename I, typename CopyCell>
void stream_row(const float* src, const I* entry, float* dst, int64_t cells,
                LeadRow<float>& lead, CopyCell&& copy_cell) {
  for (int64_t k = 0; k < cells; k += 4) {
    lead.upto(4 * k);
    for (int j = 0; j < 4; ++j)
      __builtin_prefetch(src + std::max<I>(entry[k + j + kWarpPrefetchCells], 0));
    const I a = entry[k], b = entry[k + 1], c = entry[k + 2], d = entry[k + 3];
    if ((a | b | c | d) < 0) {  // (the sign bit of any)
      for (int64_t j = k; j < k + 4; ++j) copy_cell(j);
      continue;
    }
    const __m128 va = _mm_loadu_ps(src + a), vb = _mm_loadu_ps(src + b);
    const __m128 vc = _mm_loadu_ps(src + c), vd = _mm_loadu_ps(src + d);
    _mm_stream_ps(dst + 4 * k, va);
    _mm_stream_ps(dst + 4 * k + 4, vb);
    _mm_stream_ps(dst + 4 * k + 8, vc);
    _mm_stream_ps(dst + 4 * k + 12, vd);
  }
}
#endif

// S: the cell width when known at compile time (a cell is then one move of S values), or 0.
template <typename T, typename I, int S>
void warp_forward_kernel(const T* feat, const int64_t* disp, T* out, const WarpGeometry& g,
                         bool kept_out) {
  const int64_t hw = g.h * g.w, cells = (g.w + g.scale - 1) / g.scale;
  const int64_t blocks = (g.h + kWarpBlockRows - 1) / kWarpBlockRows;
  // (padded past the end with -1: the prefetch reads entries up to kWarpPrefetchCells ahead)
  std::vector<I> table(g.n * g.h * cells + kWarpPrefetchCells, I(-1));
  cell_table(g, disp, table.data());
  const int64_t lead = source_lead_rows(g, disp);
  const bool stream = streams_lines<T, S>(out, g, kept_out);
  at::parallel_for(0, g.n * g.c * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / blocks, b = plane / g.c;
      const int64_t y0 = (task % blocks) * kWarpBlockRows;
      const int64_t y1 = std::min(g.h, y0 + kWarpBlockRows);
      const T* src = feat + plane * hw;
      for (int64_t y = y0; y < y1; ++y) {
        const I* entry = table.data() + (b * g.h + y) * cells;
        T* dst = out + plane * hw + y * g.w;
        LeadRow<T> lead_row{y + lead < g.h ? src + (y + lead) * g.w : nullptr, g.w};
        const auto copy_cell = [&](int64_t k) {
          const I from = entry[k];
          if (from < 0)
            copy_border_cell(g, disp, b, y, k, src, dst);
          else if (S > 0)
            std::memcpy(dst + k * S, src + from, S * sizeof(T));
          else
            std::copy_n(src + from, g.scale, dst + k * g.scale);
        };
#ifdef MTU_X86
        if constexpr (std::is_same_v<T, float> && S == 4) {
          if (stream) {
            stream_row(src, entry, dst, cells, lead_row, copy_cell);
            continue;
          }
        }
#endif
        for (int64_t k = 0; k < cells; ++k) {
          lead_row.upto(k * g.scale);
          __builtin_prefetch(src + std::max<I>(entry[k + kWarpPrefetchCells], 0));
          copy_cell(k);
        }
      }
    }
#ifdef MTU_X86
    if (stream) _mm_sfence();  // this thread's streamed lines written before the call returns
#endif
  });
}

template <typename T, typename I>
void warp_forward_planes(const T* feat, const int64_t* disp, T* out, const WarpGeometry& g,
                         bool kept_out) {
  if (g.scale == 4)  // (the network's: features at full resolution, motion at 1/4)
    warp_forward_kernel<T, I, 4>(feat, disp, out, g, kept_out);
  else
    warp_forward_kernel<T, I, 0>(feat, disp, out, g, kept_out);
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
                            const at::Tensor& out, bool kept_out) {
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
    const scalar_t* f = feat.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    if (g.h * g.w <= std::numeric_limits<int32_t>::max())
      warp_forward_planes<scalar_t, int32_t>(f, disp.data_ptr<int64_t>(), o, g, kept_out);
    else
      warp_forward_planes<scalar_t, int64_t>(f, disp.data_ptr<int64_t>(), o, g, kept_out);
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
