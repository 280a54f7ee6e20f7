// Tensor-level kernel entry points, one set per backend (namespaces cpu and cuda).
//
// Inputs are validated by the Python layer (pointnet2_ops/ops.py): coordinates are contiguous
// float/double (B, N, 3) tensors, features contiguous (B, C, N) of the same dtype, and index
// tensors contiguous int32. The entry points re-check only what would corrupt memory.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace pointnet2_ops {

// Declares one backend's entry points inside the namespace `ns`.
#define POINTNET2_OPS_DECLARE_KERNELS(ns)                                                        \
  namespace ns {                                                                                 \
  at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t npoint);                       \
  at::Tensor gather_points(const at::Tensor& features, const at::Tensor& idx);                   \
  at::Tensor gather_points_backward(const at::Tensor& grad_out, const at::Tensor& idx,           \
                                    int64_t n);                                                  \
  at::Tensor ball_query(double radius, int64_t nsample, const at::Tensor& xyz,                   \
                        const at::Tensor& new_xyz);                                              \
  at::Tensor group_points(const at::Tensor& features, const at::Tensor& idx);                    \
  at::Tensor group_points_backward(const at::Tensor& grad_out, const at::Tensor& idx,            \
                                   int64_t n);                                                   \
  std::tuple<at::Tensor, at::Tensor> three_nn(const at::Tensor& unknown,                         \
                                              const at::Tensor& known);                          \
  at::Tensor three_interpolate(const at::Tensor& features, const at::Tensor& idx,                \
                               const at::Tensor& weight);                                        \
  at::Tensor three_interpolate_backward(const at::Tensor& grad_out, const at::Tensor& idx,       \
                                        const at::Tensor& weight, int64_t m);                    \
  std::tuple<at::Tensor, at::Tensor> knn(const at::Tensor& query, const at::Tensor& support,     \
                                         int64_t k);                                             \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance(                 \
      const at::Tensor& a, const at::Tensor& b);                                                 \
  std::tuple<at::Tensor, at::Tensor> rasterize_points(const at::Tensor& pixels, int64_t height,  \
                                                      int64_t width, int64_t footprint);         \
  std::tuple<at::Tensor, at::Tensor> splat_weighted_depth(                                       \
      const at::Tensor& pixels, int64_t height, int64_t width, int64_t footprint);               \
  std::tuple<at::Tensor, at::Tensor> splat_sum_depth(                                            \
      const at::Tensor& pixels, int64_t height, int64_t width, int64_t footprint);               \
  }

POINTNET2_OPS_DECLARE_KERNELS(cpu)
#ifdef WITH_CUDA
POINTNET2_OPS_DECLARE_KERNELS(cuda)
#endif

#undef POINTNET2_OPS_DECLARE_KERNELS

}  // namespace pointnet2_ops
