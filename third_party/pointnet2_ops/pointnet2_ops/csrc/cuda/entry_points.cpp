// Tensor-level CUDA entry points: check inputs, allocate outputs on the inputs' device and
// launch the raw-pointer kernels (launchers.h) on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "../checks.h"
#include "../pointnet2_ops.h"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

at::TensorOptions index_options(const at::Tensor& like) { return like.options().dtype(at::kInt); }

}  // namespace

at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t npoint) {
  check_points_input(xyz, "xyz");
  const int64_t b = xyz.size(0), n = xyz.size(1);
  TORCH_CHECK(npoint > 0 && npoint <= n, "npoint must be in [1, N]");
  const c10::cuda::CUDAGuard guard(xyz.device());
  at::Tensor out = at::empty({b, npoint}, index_options(xyz));
  at::Tensor min_d = at::full({b, n}, 1e10, xyz.options());
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "furthest_point_sample_cuda", [&] {
    launch_furthest_point_sample(xyz.data_ptr<scalar_t>(), min_d.data_ptr<scalar_t>(),
                                 out.data_ptr<int32_t>(), b, n, npoint, stream());
  });
  return out;
}

at::Tensor gather_points(const at::Tensor& features, const at::Tensor& idx) {
  check_values_and_index(features, 3, idx, 2);
  const int64_t b = features.size(0), c = features.size(1), n = features.size(2);
  const int64_t m = idx.size(1);
  const c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = at::empty({b, c, m}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_points_cuda", [&] {
    launch_gather(features.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                  out.data_ptr<scalar_t>(), b, c, n, m, stream());
  });
  return out;
}

at::Tensor gather_points_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  check_backward_shapes(grad_out, idx);
  const int64_t b = grad_out.size(0), c = grad_out.size(1), m = grad_out.size(2);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor grad = at::zeros({b, c, n}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gather_points_backward_cuda", [&] {
    launch_gather_backward(grad_out.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                           grad.data_ptr<scalar_t>(), b, c, n, m, stream());
  });
  return grad;
}

at::Tensor ball_query(double radius, int64_t nsample, const at::Tensor& xyz,
                      const at::Tensor& new_xyz) {
  check_point_pair(xyz, "xyz", new_xyz, "new_xyz");
  TORCH_CHECK(nsample > 0, "nsample must be positive");
  const int64_t b = xyz.size(0), n = xyz.size(1), m = new_xyz.size(1);
  const c10::cuda::CUDAGuard guard(xyz.device());
  at::Tensor idx = at::zeros({b, m, nsample}, index_options(xyz));
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "ball_query_cuda", [&] {
    launch_ball_query(xyz.data_ptr<scalar_t>(), new_xyz.data_ptr<scalar_t>(),
                      idx.data_ptr<int32_t>(), b, n, m, nsample, static_cast<scalar_t>(radius),
                      stream());
  });
  return idx;
}

at::Tensor group_points(const at::Tensor& features, const at::Tensor& idx) {
  check_values_and_index(features, 3, idx, 3);
  const int64_t b = features.size(0), c = features.size(1), n = features.size(2);
  const c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = at::empty({b, c, idx.size(1), idx.size(2)}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "group_points_cuda", [&] {
    launch_group(features.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                 out.data_ptr<scalar_t>(), b, c, n, idx.size(1) * idx.size(2), stream());
  });
  return out;
}

at::Tensor group_points_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  check_backward_shapes(grad_out, idx);
  const int64_t b = grad_out.size(0), c = grad_out.size(1);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor grad = at::zeros({b, c, n}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "group_points_backward_cuda", [&] {
    launch_group_backward(grad_out.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                          grad.data_ptr<scalar_t>(), b, c, n, idx.size(1) * idx.size(2),
                          stream());
  });
  return grad;
}

std::tuple<at::Tensor, at::Tensor> three_nn(const at::Tensor& unknown, const at::Tensor& known) {
  check_point_pair(unknown, "unknown", known, "known");
  const int64_t b = unknown.size(0), n = unknown.size(1), m = known.size(1);
  const c10::cuda::CUDAGuard guard(unknown.device());
  at::Tensor dist2 = at::empty({b, n, 3}, unknown.options());
  at::Tensor idx = at::empty({b, n, 3}, index_options(unknown));
  AT_DISPATCH_FLOATING_TYPES(unknown.scalar_type(), "three_nn_cuda", [&] {
    launch_three_nn(unknown.data_ptr<scalar_t>(), known.data_ptr<scalar_t>(),
                    dist2.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), b, n, m, stream());
  });
  return {dist2, idx};
}

at::Tensor three_interpolate(const at::Tensor& features, const at::Tensor& idx,
                             const at::Tensor& weight) {
  check_interpolation(features, idx, weight);
  const int64_t b = features.size(0), c = features.size(1), m = features.size(2);
  const int64_t n = idx.size(1);
  const c10::cuda::CUDAGuard guard(features.device());
  at::Tensor out = at::empty({b, c, n}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_cuda", [&] {
    launch_three_interpolate(features.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                             weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), b, c, m, n,
                             stream());
  });
  return out;
}

at::Tensor three_interpolate_backward(const at::Tensor& grad_out, const at::Tensor& idx,
                                      const at::Tensor& weight, int64_t m) {
  check_interpolation(grad_out, idx, weight);
  const int64_t b = grad_out.size(0), c = grad_out.size(1), n = grad_out.size(2);
  TORCH_CHECK(idx.size(1) == n, "grad_out and idx shapes do not match");
  const c10::cuda::CUDAGuard guard(grad_out.device());
  at::Tensor grad = at::zeros({b, c, m}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "three_interpolate_backward_cuda", [&] {
    launch_three_interpolate_backward(grad_out.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                                      weight.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), b,
                                      c, m, n, stream());
  });
  return grad;
}

std::tuple<at::Tensor, at::Tensor> knn(const at::Tensor& query, const at::Tensor& support,
                                       int64_t k) {
  check_point_pair(query, "query", support, "support");
  const int64_t b = query.size(0), m = query.size(1), n = support.size(1);
  TORCH_CHECK(k > 0 && k <= n, "k must be in [1, N]");
  const c10::cuda::CUDAGuard guard(query.device());
  at::Tensor dist2 = at::empty({b, m, k}, query.options());
  at::Tensor idx = at::empty({b, m, k}, index_options(query));
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "knn_cuda", [&] {
    launch_knn(query.data_ptr<scalar_t>(), support.data_ptr<scalar_t>(),
               dist2.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), b, m, n, k, stream());
  });
  return {dist2, idx};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance(const at::Tensor& a,
                                                                            const at::Tensor& b) {
  check_point_pair(a, "a", b, "b");
  const int64_t batch = a.size(0), n = a.size(1), m = b.size(1);
  TORCH_CHECK(n > 0 && m > 0, "a and b must hold at least one point per cloud");
  const c10::cuda::CUDAGuard guard(a.device());
  const at::TensorOptions index_options = a.options().dtype(at::kLong);
  at::Tensor dist_ab = at::empty({batch, n}, a.options());
  at::Tensor idx_ab = at::empty({batch, n}, index_options);
  at::Tensor dist_ba = at::empty({batch, m}, a.options());
  at::Tensor idx_ba = at::empty({batch, m}, index_options);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "chamfer_distance_cuda", [&] {
    launch_chamfer_nearest(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
                           dist_ab.data_ptr<scalar_t>(), idx_ab.data_ptr<int64_t>(), batch, n, m,
                           stream());
    launch_chamfer_nearest(b.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
                           dist_ba.data_ptr<scalar_t>(), idx_ba.data_ptr<int64_t>(), batch, m, n,
                           stream());
  });
  return {dist_ab, idx_ab, dist_ba, idx_ba};
}

std::tuple<at::Tensor, at::Tensor> rasterize_points(const at::Tensor& pixels, int64_t height,
                                                    int64_t width, int64_t footprint) {
  check_points_input(pixels, "pixels");
  TORCH_CHECK(height > 0 && width > 0 && footprint > 0,
              "height, width and footprint must be positive");
  const int64_t b = pixels.size(0), n = pixels.size(1);
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "at most 2^31 - 1 points per cloud");
  const c10::cuda::CUDAGuard guard(pixels.device());
  at::Tensor zbuf = at::empty({b, height, width}, pixels.options().dtype(at::kFloat));
  at::Tensor index = at::full({b, height, width}, -1, pixels.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "rasterize_points_cuda", [&] {
    launch_rasterize_points(pixels.data_ptr<scalar_t>(), index.data_ptr<int64_t>(),
                            zbuf.data_ptr<float>(), b, n, height, width, footprint, stream());
  });
  return {zbuf, index};
}

std::tuple<at::Tensor, at::Tensor> splat_weighted_depth(const at::Tensor& pixels, int64_t height,
                                                        int64_t width, int64_t footprint) {
  check_points_input(pixels, "pixels");
  TORCH_CHECK(height > 0 && width > 0 && footprint > 0,
              "height, width and footprint must be positive");
  const int64_t b = pixels.size(0), n = pixels.size(1);
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "at most 2^31 - 1 points per cloud");
  const c10::cuda::CUDAGuard guard(pixels.device());
  at::Tensor value = at::empty({b, height, width}, pixels.options().dtype(at::kFloat));
  at::Tensor index = at::full({b, height, width}, -1, pixels.options().dtype(at::kLong));
  at::Tensor sums = at::zeros({2, b, height, width}, pixels.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "splat_weighted_depth_cuda", [&] {
    launch_splat_weighted_depth(pixels.data_ptr<scalar_t>(), index.data_ptr<int64_t>(),
                                value.data_ptr<float>(), sums.data_ptr<double>(), b, n, height,
                                width, footprint, stream());
  });
  return {value, index};
}

std::tuple<at::Tensor, at::Tensor> splat_sum_depth(const at::Tensor& pixels, int64_t height,
                                                   int64_t width, int64_t footprint) {
  check_points_input(pixels, "pixels");
  TORCH_CHECK(height > 0 && width > 0 && footprint > 0,
              "height, width and footprint must be positive");
  const int64_t b = pixels.size(0), n = pixels.size(1);
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "at most 2^31 - 1 points per cloud");
  const c10::cuda::CUDAGuard guard(pixels.device());
  at::Tensor value = at::empty({b, height, width}, pixels.options().dtype(at::kFloat));
  at::Tensor count = at::zeros({b, height, width}, pixels.options().dtype(at::kLong));
  at::Tensor sums = at::zeros({b, height, width}, pixels.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(pixels.scalar_type(), "splat_sum_depth_cuda", [&] {
    launch_splat_sum_depth(pixels.data_ptr<scalar_t>(), count.data_ptr<int64_t>(),
                           value.data_ptr<float>(), sums.data_ptr<double>(), b, n, height, width,
                           footprint, stream());
  });
  return {value, count};
}

}  // namespace pointnet2_ops::cuda
