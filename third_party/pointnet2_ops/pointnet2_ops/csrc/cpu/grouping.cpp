// CPU grouping: features (B, C, N) gathered at neighbourhood indices (B, M, K).
#include "../checks.h"
#include "../pointnet2_ops.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {

at::Tensor group_points(const at::Tensor& features, const at::Tensor& idx) {
  check_values_and_index(features, 3, idx, 3);
  const int64_t b = features.size(0), c = features.size(1), n = features.size(2);
  check_index_range(idx, n);
  const int64_t m = idx.size(1), k = idx.size(2), mk = m * k;
  at::Tensor out = at::empty({b, c, m, k}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_points_cpu", [&] {
    const scalar_t* src = features.data_ptr<scalar_t>();
    const int32_t* ids = idx.data_ptr<int32_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, b * c, grain_for(mk), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int32_t* row_ids = ids + (row / c) * mk;
        const scalar_t* row_src = src + row * n;
        scalar_t* row_dst = dst + row * mk;
        for (int64_t j = 0; j < mk; ++j) row_dst[j] = row_src[row_ids[j]];
      }
    });
  });
  return out;
}

at::Tensor group_points_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  check_backward_shapes(grad_out, idx);
  check_index_range(idx, n);
  const int64_t b = grad_out.size(0), c = grad_out.size(1);
  const int64_t mk = grad_out.size(2) * grad_out.size(3);
  at::Tensor grad = at::zeros({b, c, n}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "group_points_backward_cpu", [&] {
    const scalar_t* src = grad_out.data_ptr<scalar_t>();
    const int32_t* ids = idx.data_ptr<int32_t>();
    scalar_t* dst = grad.data_ptr<scalar_t>();
    // One (batch, channel) row per task: rows never share output, so no atomics are needed.
    at::parallel_for(0, b * c, grain_for(mk), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int32_t* row_ids = ids + (row / c) * mk;
        const scalar_t* row_src = src + row * mk;
        scalar_t* row_dst = dst + row * n;
        for (int64_t j = 0; j < mk; ++j) row_dst[row_ids[j]] += row_src[j];
      }
    });
  });
  return grad;
}

}  // namespace pointnet2_ops::cpu
