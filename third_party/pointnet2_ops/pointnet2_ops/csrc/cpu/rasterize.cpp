// CPU point rasterisers: each point covers a footprint x footprint pixel square.
//   rasterize_points:     every pixel keeps the nearest covering point (minimum float32 depth,
//                         ties to the lower point index).
//   splat_weighted_depth: every pixel gets sum_i w_i z_i / sum_i w_i, w_i = 1 / z_i, over its
//                         covering points (float64 sums), plus the nearest point's index.
//   splat_sum_depth:      every pixel gets sum_i z_i over its covering points, depths of any
//                         sign (float64 sums; I2P-MAE's `scatter(..., reduce='sum')`), plus
//                         the number of covering points.
//
// Work is split into tasks of (cloud, band of rows); a task owns its pixels, so no two threads
// write the same pixel and no atomics are needed. A task initialises its own pixels before
// splatting into them, so they are hot in cache (outputs are allocated uninitialised).
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../pointnet2_ops.h"
#include "../raster_common.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {
namespace {

// Calls visit(pixel, depth, i) for every pixel of rows [row_lo, row_hi] covered by each visible
// point i of cloud `pts` (n, 3), points in index order; `pixel` counts from the band's first
// pixel (row_lo, 0). Visible: a positive finite depth, or with kAnySign any finite depth.
template <bool kAnySign = false, typename scalar_t, typename Visit>
inline void for_each_covered_pixel(const scalar_t* pts, int64_t n, int64_t height, int64_t width,
                                   int64_t footprint, int64_t row_lo, int64_t row_hi,
                                   Visit&& visit) {
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* p = pts + 3 * i;
    float depth;
    PixelSpan rows, cols;
    const bool drawn = kAnySign ? finite_depth(p[2], &depth) : visible_depth(p[2], &depth);
    if (!drawn || !footprint_span(p[1], footprint, height, &rows)) {
      continue;
    }
    const int64_t r0 = std::max(rows.lo, row_lo), r1 = std::min(rows.hi, row_hi);
    if (r0 > r1 || !footprint_span(p[0], footprint, width, &cols)) continue;
    for (int64_t r = r0; r <= r1; ++r) {
      const int64_t line = (r - row_lo) * width;
      for (int64_t c = cols.lo; c <= cols.hi; ++c) visit(line + c, depth, i);
    }
  }
}

// Task layout: images split into `bands` bands of `band_rows` rows (the last may be shorter).
// Bands only split the images when there are fewer clouds than threads.
struct Bands {
  int64_t band_rows, bands;

  Bands(int64_t b, int64_t height) {
    const int64_t wanted = std::min<int64_t>(height, (at::get_num_threads() + b - 1) / b);
    band_rows = (height + wanted - 1) / wanted;
    bands = (height + band_rows - 1) / band_rows;
  }
};

// Runs task(cloud, row_lo, row_hi, buffer) for every (cloud, band) in parallel; `buffer` is a
// per-chunk scratch vector that tasks may resize and reuse.
template <typename Buffer, typename Task>
void for_each_band(int64_t b, int64_t n, int64_t height, int64_t width, Task&& task) {
  const Bands layout(b, height);
  const int64_t work = n + layout.band_rows * width;  // points visited + pixels initialised
  at::parallel_for(0, b * layout.bands, grain_for(work), [&](int64_t begin, int64_t end) {
    Buffer buffer;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cloud = t / layout.bands, row_lo = (t % layout.bands) * layout.band_rows;
      task(cloud, row_lo, std::min(height, row_lo + layout.band_rows) - 1, buffer);
    }
  });
}

void check_raster_args(const at::Tensor& pixels, int64_t height, int64_t width,
                       int64_t footprint) {
  check_points_input(pixels, "pixels");
  TORCH_CHECK(height > 0 && width > 0 && footprint > 0,
              "height, width and footprint must be positive");
  TORCH_CHECK(pixels.size(1) <= std::numeric_limits<int32_t>::max(),
              "at most 2^31 - 1 points per cloud");
}

struct NoBuffer {};

}  // namespace

std::tuple<at::Tensor, at::Tensor> rasterize_points(const at::Tensor& pixels, int64_t height,
                                                    int64_t width, int64_t footprint) {
  check_raster_args(pixels, height, width, footprint);
  const int64_t b = pixels.size(0), n = pixels.size(1), image = height * width;
  at::Tensor zbuf = at::empty({b, height, width}, pixels.options().dtype(at::kFloat));
  at::Tensor index = at::empty({b, height, width}, pixels.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "rasterize_points_cpu", [&] {
    const scalar_t* pts = pixels.data_ptr<scalar_t>();
    float* z_all = zbuf.data_ptr<float>();
    int64_t* id_all = index.data_ptr<int64_t>();
    for_each_band<NoBuffer>(b, n, height, width, [&](int64_t cloud, int64_t row_lo,
                                                     int64_t row_hi, NoBuffer&) {
      const int64_t first = cloud * image + row_lo * width, count = (row_hi - row_lo + 1) * width;
      float* z = z_all + first;
      int64_t* id = id_all + first;
      std::fill(z, z + count, INFINITY);
      std::fill(id, id + count, int64_t{-1});
      // Strictly nearer replaces: ties keep the lower index (points come in index order).
      for_each_covered_pixel(pts + cloud * n * 3, n, height, width, footprint, row_lo, row_hi,
                             [&](int64_t pix, float depth, int64_t i) {
                               if (depth < z[pix]) {
                                 z[pix] = depth;
                                 id[pix] = i;
                               }
                             });
    });
  });
  return {zbuf, index};
}

std::tuple<at::Tensor, at::Tensor> splat_weighted_depth(const at::Tensor& pixels, int64_t height,
                                                        int64_t width, int64_t footprint) {
  check_raster_args(pixels, height, width, footprint);
  const int64_t b = pixels.size(0), n = pixels.size(1), image = height * width;
  at::Tensor value = at::empty({b, height, width}, pixels.options().dtype(at::kFloat));
  at::Tensor index = at::empty({b, height, width}, pixels.options().dtype(at::kLong));
  // Per-band scratch: interleaved (sum w z, sum w) pairs.
  using Sums = std::vector<double>;
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "splat_weighted_depth_cpu", [&] {
    const scalar_t* pts = pixels.data_ptr<scalar_t>();
    float* v_all = value.data_ptr<float>();
    int64_t* id_all = index.data_ptr<int64_t>();
    for_each_band<Sums>(b, n, height, width, [&](int64_t cloud, int64_t row_lo, int64_t row_hi,
                                                 Sums& sums) {
      const int64_t first = cloud * image + row_lo * width, count = (row_hi - row_lo + 1) * width;
      float* zmin = v_all + first;  // holds the minimum depth until the values are written
      int64_t* id = id_all + first;
      std::fill(zmin, zmin + count, INFINITY);
      std::fill(id, id + count, int64_t{-1});
      sums.assign(2 * count, 0.0);
      for_each_covered_pixel(pts + cloud * n * 3, n, height, width, footprint, row_lo, row_hi,
                             [&](int64_t pix, float depth, int64_t i) {
                               if (depth < zmin[pix]) {
                                 zmin[pix] = depth;
                                 id[pix] = i;
                               }
                               const double z = depth, w = 1.0 / z;  // CLIP2Point Eq. 8
                               sums[2 * pix] += w * z;
                               sums[2 * pix + 1] += w;
                             });
      for (int64_t pix = 0; pix < count; ++pix) {
        if (id[pix] >= 0) zmin[pix] = static_cast<float>(sums[2 * pix] / sums[2 * pix + 1]);
      }
    });
  });
  return {value, index};
}

std::tuple<at::Tensor, at::Tensor> splat_sum_depth(const at::Tensor& pixels, int64_t height,
                                                   int64_t width, int64_t footprint) {
  check_raster_args(pixels, height, width, footprint);
  const int64_t b = pixels.size(0), n = pixels.size(1), image = height * width;
  at::Tensor value = at::empty({b, height, width}, pixels.options().dtype(at::kFloat));
  at::Tensor count = at::empty({b, height, width}, pixels.options().dtype(at::kLong));
  using Sums = std::vector<double>;  // per-band float64 sums of the depths
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "splat_sum_depth_cpu", [&] {
    const scalar_t* pts = pixels.data_ptr<scalar_t>();
    float* v_all = value.data_ptr<float>();
    int64_t* c_all = count.data_ptr<int64_t>();
    for_each_band<Sums>(b, n, height, width, [&](int64_t cloud, int64_t row_lo, int64_t row_hi,
                                                 Sums& sums) {
      const int64_t first = cloud * image + row_lo * width;
      const int64_t pixel_count = (row_hi - row_lo + 1) * width;
      int64_t* hits = c_all + first;
      std::fill(hits, hits + pixel_count, int64_t{0});
      sums.assign(pixel_count, 0.0);
      for_each_covered_pixel<true>(pts + cloud * n * 3, n, height, width, footprint, row_lo,
                                   row_hi, [&](int64_t pix, float depth, int64_t) {
                                     sums[pix] += static_cast<double>(depth);
                                     ++hits[pix];
                                   });
      float* v = v_all + first;
      for (int64_t pix = 0; pix < pixel_count; ++pix) v[pix] = static_cast<float>(sums[pix]);
    });
  });
  return {value, count};
}

}  // namespace pointnet2_ops::cpu
