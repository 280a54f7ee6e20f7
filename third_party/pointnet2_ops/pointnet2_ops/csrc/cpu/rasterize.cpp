// CPU point rasteriser: each point covers a footprint x footprint pixel square; every pixel
// keeps the nearest covering point (minimum float32 depth, ties to the lower point index).
#include <ATen/ops/full.h>

#include <cmath>
#include <limits>

#include "../checks.h"
#include "../pointnet2_ops.h"
#include "../raster_common.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {
namespace {

// Splats cloud `pts` (n, 3) into the rows [row_lo, row_hi] of one image. Points are visited in
// index order and replace a pixel only when strictly nearer, so ties keep the lower index.
template <typename scalar_t>
void splat_rows(const scalar_t* pts, int64_t n, int64_t height, int64_t width, int64_t footprint,
                int64_t row_lo, int64_t row_hi, float* zbuf, int64_t* index) {
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* p = pts + 3 * i;
    float depth;
    PixelSpan rows, cols;
    if (!visible_depth(p[2], &depth) || !footprint_span(p[1], footprint, height, &rows) ||
        !footprint_span(p[0], footprint, width, &cols)) {
      continue;
    }
    const int64_t r0 = std::max(rows.lo, row_lo), r1 = std::min(rows.hi, row_hi);
    for (int64_t r = r0; r <= r1; ++r) {
      for (int64_t c = cols.lo; c <= cols.hi; ++c) {
        const int64_t pix = r * width + c;
        if (depth < zbuf[pix]) {
          zbuf[pix] = depth;
          index[pix] = i;
        }
      }
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rasterize_points(const at::Tensor& pixels, int64_t height,
                                                    int64_t width, int64_t footprint) {
  check_points_input(pixels, "pixels");
  TORCH_CHECK(height > 0 && width > 0 && footprint > 0,
              "height, width and footprint must be positive");
  const int64_t b = pixels.size(0), n = pixels.size(1);
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "at most 2^31 - 1 points per cloud");
  at::Tensor zbuf = at::full({b, height, width}, INFINITY, pixels.options().dtype(at::kFloat));
  at::Tensor index = at::full({b, height, width}, -1, pixels.options().dtype(at::kLong));
  // One task per (cloud, band of rows): a task owns its pixels, so no two threads write the
  // same pixel. Bands only split the images when there are fewer clouds than threads.
  const int64_t bands_wanted = std::min<int64_t>(height, (at::get_num_threads() + b - 1) / b);
  const int64_t band_rows = (height + bands_wanted - 1) / bands_wanted;
  const int64_t bands = (height + band_rows - 1) / band_rows;
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "rasterize_points_cpu", [&] {
    const scalar_t* pts = pixels.data_ptr<scalar_t>();
    float* z = zbuf.data_ptr<float>();
    int64_t* id = index.data_ptr<int64_t>();
    at::parallel_for(0, b * bands, grain_for(n), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t cloud = task / bands, row_lo = (task % bands) * band_rows;
        const int64_t row_hi = std::min(height, row_lo + band_rows) - 1;
        const int64_t image = cloud * height * width;
        splat_rows(pts + cloud * n * 3, n, height, width, footprint, row_lo, row_hi, z + image,
                   id + image);
      }
    });
  });
  return {zbuf, index};
}

}  // namespace pointnet2_ops::cpu
