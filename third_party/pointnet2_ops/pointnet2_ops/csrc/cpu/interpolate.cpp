// CPU feature propagation: three nearest neighbours and inverse-distance interpolation.
#include <limits>

#include "../checks.h"
#include "../pointnet2_ops.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {

std::tuple<at::Tensor, at::Tensor> three_nn(const at::Tensor& unknown, const at::Tensor& known) {
  check_point_pair(unknown, "unknown", known, "known");
  const int64_t b = unknown.size(0), n = unknown.size(1), m = known.size(1);
  at::Tensor dist2 = at::empty({b, n, 3}, unknown.options());
  at::Tensor idx = at::empty({b, n, 3}, unknown.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(unknown.scalar_type(), "three_nn_cpu", [&] {
    const scalar_t* u = unknown.data_ptr<scalar_t>();
    const scalar_t* kn = known.data_ptr<scalar_t>();
    scalar_t* d_out = dist2.data_ptr<scalar_t>();
    int32_t* i_out = idx.data_ptr<int32_t>();
    at::parallel_for(0, b * n, grain_for(m), [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const scalar_t* p = u + 3 * q;
        const scalar_t* pts = kn + (q / n) * m * 3;
        scalar_t best[3] = {std::numeric_limits<scalar_t>::infinity(),
                            std::numeric_limits<scalar_t>::infinity(),
                            std::numeric_limits<scalar_t>::infinity()};
        int32_t best_i[3] = {0, 0, 0};
        // Strict `<` cascade: on ties the earlier (lower) index keeps its rank.
        for (int64_t k = 0; k < m; ++k) {
          const scalar_t d = sq_dist(p[0], p[1], p[2], pts[3 * k], pts[3 * k + 1], pts[3 * k + 2]);
          const int32_t ki = static_cast<int32_t>(k);
          if (d < best[0]) {
            best[2] = best[1], best_i[2] = best_i[1];
            best[1] = best[0], best_i[1] = best_i[0];
            best[0] = d, best_i[0] = ki;
          } else if (d < best[1]) {
            best[2] = best[1], best_i[2] = best_i[1];
            best[1] = d, best_i[1] = ki;
          } else if (d < best[2]) {
            best[2] = d, best_i[2] = ki;
          }
        }
        for (int s = 0; s < 3; ++s) {
          d_out[3 * q + s] = best[s];
          i_out[3 * q + s] = best_i[s];
        }
      }
    });
  });
  return {dist2, idx};
}

at::Tensor three_interpolate(const at::Tensor& features, const at::Tensor& idx,
                             const at::Tensor& weight) {
  check_interpolation(features, idx, weight);
  const int64_t b = features.size(0), c = features.size(1), m = features.size(2);
  check_index_range(idx, m);
  const int64_t n = idx.size(1);
  at::Tensor out = at::empty({b, c, n}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_cpu", [&] {
    const scalar_t* src = features.data_ptr<scalar_t>();
    const int32_t* ids = idx.data_ptr<int32_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, b * c, grain_for(3 * n), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int32_t* row_ids = ids + (row / c) * n * 3;
        const scalar_t* row_w = w + (row / c) * n * 3;
        const scalar_t* row_src = src + row * m;
        for (int64_t j = 0; j < n; ++j) {
          const int32_t* i3 = row_ids + 3 * j;
          const scalar_t* w3 = row_w + 3 * j;
          dst[row * n + j] =
              w3[0] * row_src[i3[0]] + w3[1] * row_src[i3[1]] + w3[2] * row_src[i3[2]];
        }
      }
    });
  });
  return out;
}

at::Tensor three_interpolate_backward(const at::Tensor& grad_out, const at::Tensor& idx,
                                      const at::Tensor& weight, int64_t m) {
  check_interpolation(grad_out, idx, weight);
  const int64_t b = grad_out.size(0), c = grad_out.size(1), n = grad_out.size(2);
  TORCH_CHECK(idx.size(1) == n, "grad_out and idx shapes do not match");
  check_index_range(idx, m);
  at::Tensor grad = at::zeros({b, c, m}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "three_interpolate_backward_cpu", [&] {
    const scalar_t* src = grad_out.data_ptr<scalar_t>();
    const int32_t* ids = idx.data_ptr<int32_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* dst = grad.data_ptr<scalar_t>();
    // One (batch, channel) row per task: rows never share output, so no atomics are needed.
    at::parallel_for(0, b * c, grain_for(3 * n), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int32_t* row_ids = ids + (row / c) * n * 3;
        const scalar_t* row_w = w + (row / c) * n * 3;
        scalar_t* row_dst = dst + row * m;
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t g = src[row * n + j];
          for (int s = 0; s < 3; ++s) row_dst[row_ids[3 * j + s]] += g * row_w[3 * j + s];
        }
      }
    });
  });
  return grad;
}

}  // namespace pointnet2_ops::cpu
