// Argument checks shared by the CPU and CUDA entry points. The Python layer validates first
// (with friendlier messages); these only guard the raw-pointer kernels against bad shapes.
#pragma once

#include <ATen/core/Tensor.h>

namespace pointnet2_ops {

inline void check_float_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_index_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == at::kInt, name, " must be int32, got ", t.scalar_type());
}

inline void check_points_input(const at::Tensor& t, const char* name) {
  check_float_input(t, name);
  TORCH_CHECK(t.dim() == 3 && t.size(2) == 3, name, " must have shape (B, N, 3)");
}

// Two point clouds of one dtype and batch size.
inline void check_point_pair(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                             const char* b_name) {
  check_points_input(a, a_name);
  check_points_input(b, b_name);
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " and ", b_name,
              " must have the same dtype");
  TORCH_CHECK(a.size(0) == b.size(0), a_name, " and ", b_name, " must have the same batch size");
}

// values (B, C, N) and idx (B, ...) with idx.dim() == idx_dim.
inline void check_values_and_index(const at::Tensor& values, int64_t values_dim,
                                   const at::Tensor& idx, int64_t idx_dim) {
  check_float_input(values, "values");
  check_index_input(idx, "idx");
  TORCH_CHECK(values.dim() == values_dim && idx.dim() == idx_dim &&
                  idx.size(0) == values.size(0),
              "expected a (B, C, ...) tensor with ", values_dim, " dims and (B, ...) indices with ",
              idx_dim, " dims");
}

// grad_out (B, C, *idx.shape[1:]) for the gather/group backward passes.
inline void check_backward_shapes(const at::Tensor& grad_out, const at::Tensor& idx) {
  check_values_and_index(grad_out, idx.dim() + 1, idx, idx.dim());
  for (int64_t d = 1; d < idx.dim(); ++d) {
    TORCH_CHECK(idx.size(d) == grad_out.size(d + 1), "grad_out and idx shapes do not match");
  }
}

// Interpolation inputs: values (B, C, *), idx and weight (B, n, 3) of values' dtype.
inline void check_interpolation(const at::Tensor& values, const at::Tensor& idx,
                                const at::Tensor& weight) {
  check_values_and_index(values, 3, idx, 3);
  check_float_input(weight, "weight");
  TORCH_CHECK(weight.scalar_type() == values.scalar_type(), "weight must have the values' dtype");
  TORCH_CHECK(idx.sizes() == weight.sizes() && idx.size(2) == 3,
              "idx and weight must both have shape (B, n, 3)");
}

}  // namespace pointnet2_ops
