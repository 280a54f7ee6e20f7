// Raw-pointer launchers of the CUDA kernels, defined in the .cu files and instantiated for
// float and double. Keeping ATen out of the .cu files keeps nvcc's compile time short; the
// tensor-level entry points (entry_points.cpp) allocate outputs and call these on the
// current stream. Shapes: B clouds, N points, M centres/samples, K neighbours, C channels.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace pointnet2_ops::cuda {

// xyz (B, N, 3), min_d (B, N) scratch filled with 1e10, out (B, M).
template <typename scalar_t>
void launch_furthest_point_sample(const scalar_t* xyz, scalar_t* min_d, int32_t* out, int64_t b,
                                  int64_t n, int64_t m, cudaStream_t stream);

// Gather (rows = B * C, idx (B, M)) and its backward (grad zero-initialised).
template <typename scalar_t>
void launch_gather(const scalar_t* features, const int32_t* idx, scalar_t* out, int64_t b,
                   int64_t c, int64_t n, int64_t m, cudaStream_t stream);
template <typename scalar_t>
void launch_gather_backward(const scalar_t* grad_out, const int32_t* idx, scalar_t* grad,
                            int64_t b, int64_t c, int64_t n, int64_t m, cudaStream_t stream);

// xyz (B, N, 3), new_xyz (B, M, 3), idx (B, M, nsample) zero-initialised.
template <typename scalar_t>
void launch_ball_query(const scalar_t* xyz, const scalar_t* new_xyz, int32_t* idx, int64_t b,
                       int64_t n, int64_t m, int64_t nsample, scalar_t radius,
                       cudaStream_t stream);

// Group (idx (B, M, K) flattened to mk = M * K) and its backward (grad zero-initialised).
template <typename scalar_t>
void launch_group(const scalar_t* features, const int32_t* idx, scalar_t* out, int64_t b,
                  int64_t c, int64_t n, int64_t mk, cudaStream_t stream);
template <typename scalar_t>
void launch_group_backward(const scalar_t* grad_out, const int32_t* idx, scalar_t* grad,
                           int64_t b, int64_t c, int64_t n, int64_t mk, cudaStream_t stream);

// unknown (B, n, 3), known (B, m, 3), dist2/idx (B, n, 3).
template <typename scalar_t>
void launch_three_nn(const scalar_t* unknown, const scalar_t* known, scalar_t* dist2,
                     int32_t* idx, int64_t b, int64_t n, int64_t m, cudaStream_t stream);

// features (B, C, m), idx/weight (B, n, 3), out (B, C, n); backward grad zero-initialised.
template <typename scalar_t>
void launch_three_interpolate(const scalar_t* features, const int32_t* idx,
                              const scalar_t* weight, scalar_t* out, int64_t b, int64_t c,
                              int64_t m, int64_t n, cudaStream_t stream);
template <typename scalar_t>
void launch_three_interpolate_backward(const scalar_t* grad_out, const int32_t* idx,
                                       const scalar_t* weight, scalar_t* grad, int64_t b,
                                       int64_t c, int64_t m, int64_t n, cudaStream_t stream);

// query (B, M, 3), support (B, N, 3), dist2/idx (B, M, k).
template <typename scalar_t>
void launch_knn(const scalar_t* query, const scalar_t* support, scalar_t* dist2, int32_t* idx,
                int64_t b, int64_t m, int64_t n, int64_t k, cudaStream_t stream);

// Nearest of the p candidates (B, p, 3) for each query (B, q, 3): dist/idx (B, q).
template <typename scalar_t>
void launch_chamfer_nearest(const scalar_t* query, const scalar_t* points, scalar_t* dist,
                            int64_t* idx, int64_t b, int64_t q, int64_t p, cudaStream_t stream);

// pixels (B, N, 3) [col, row, depth]; index (B, H, W) filled with -1, zbuf (B, H, W).
template <typename scalar_t>
void launch_rasterize_points(const scalar_t* pixels, int64_t* index, float* zbuf, int64_t b,
                             int64_t n, int64_t height, int64_t width, int64_t footprint,
                             cudaStream_t stream);

// pixels (B, N, 3); index (B, H, W) filled with -1, value (B, H, W), sums (2, B, H, W) zeroed.
template <typename scalar_t>
void launch_splat_weighted_depth(const scalar_t* pixels, int64_t* index, float* value,
                                 double* sums, int64_t b, int64_t n, int64_t height,
                                 int64_t width, int64_t footprint, cudaStream_t stream);

// pixels (B, N, 3); count (B, H, W) and sums (B, H, W) zeroed, value (B, H, W).
template <typename scalar_t>
void launch_splat_sum_depth(const scalar_t* pixels, int64_t* count, float* value, double* sums,
                            int64_t b, int64_t n, int64_t height, int64_t width,
                            int64_t footprint, cudaStream_t stream);

}  // namespace pointnet2_ops::cuda
