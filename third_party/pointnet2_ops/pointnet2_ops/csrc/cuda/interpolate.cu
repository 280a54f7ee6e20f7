// CUDA feature propagation: three nearest neighbours and inverse-distance interpolation.
#include <limits>

#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

// One thread per unknown point; strict `<` cascade so ties keep the lower index. Slots not
// filled (m < 3) keep +inf and index 0.
template <typename scalar_t>
__global__ void three_nn_kernel(const scalar_t* __restrict__ unknown,
                                const scalar_t* __restrict__ known,
                                scalar_t* __restrict__ dist2, int32_t* __restrict__ idx,
                                int64_t n, int64_t m, int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* p = unknown + 3 * q;
  const scalar_t* pts = known + (q / n) * m * 3;
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  scalar_t b0 = inf, b1 = inf, b2 = inf;
  int32_t i0 = 0, i1 = 0, i2 = 0;
  for (int64_t k = 0; k < m; ++k) {
    const scalar_t d = sq_dist(p, pts + 3 * k);
    const int32_t ki = static_cast<int32_t>(k);
    if (d < b0) {
      b2 = b1, i2 = i1;
      b1 = b0, i1 = i0;
      b0 = d, i0 = ki;
    } else if (d < b1) {
      b2 = b1, i2 = i1;
      b1 = d, i1 = ki;
    } else if (d < b2) {
      b2 = d, i2 = ki;
    }
  }
  dist2[3 * q] = b0, dist2[3 * q + 1] = b1, dist2[3 * q + 2] = b2;
  idx[3 * q] = i0, idx[3 * q + 1] = i1, idx[3 * q + 2] = i2;
}

// One thread per output element (row = b * C + c, j over n).
template <typename scalar_t>
__global__ void interpolate_kernel(const scalar_t* __restrict__ features,
                                   const int32_t* __restrict__ idx,
                                   const scalar_t* __restrict__ weight,
                                   scalar_t* __restrict__ out, int64_t c, int64_t m, int64_t n,
                                   int64_t total) {
  const int64_t t = thread_index();
  if (t >= total) return;
  const int64_t row = t / n, j = t % n, off = ((row / c) * n + j) * 3;
  const scalar_t* f = features + row * m;
  out[t] = weight[off] * f[idx[off]] + weight[off + 1] * f[idx[off + 1]] +
           weight[off + 2] * f[idx[off + 2]];
}

template <typename scalar_t>
__global__ void interpolate_backward_kernel(const scalar_t* __restrict__ grad_out,
                                            const int32_t* __restrict__ idx,
                                            const scalar_t* __restrict__ weight,
                                            scalar_t* __restrict__ grad, int64_t c, int64_t m,
                                            int64_t n, int64_t total) {
  const int64_t t = thread_index();
  if (t >= total) return;
  const int64_t row = t / n, j = t % n, off = ((row / c) * n + j) * 3;
  const scalar_t g = grad_out[t];
  scalar_t* dst = grad + row * m;
  for (int s = 0; s < 3; ++s) atomicAdd(dst + idx[off + s], g * weight[off + s]);
}

}  // namespace

template <typename scalar_t>
void launch_three_nn(const scalar_t* unknown, const scalar_t* known, scalar_t* dist2,
                     int32_t* idx, int64_t b, int64_t n, int64_t m, cudaStream_t stream) {
  const int64_t total = b * n;
  if (total == 0) return;
  three_nn_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(unknown, known, dist2,
                                                                        idx, n, m, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_three_interpolate(const scalar_t* features, const int32_t* idx,
                              const scalar_t* weight, scalar_t* out, int64_t b, int64_t c,
                              int64_t m, int64_t n, cudaStream_t stream) {
  const int64_t total = b * c * n;
  if (total == 0) return;
  interpolate_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
      features, idx, weight, out, c, m, n, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_three_interpolate_backward(const scalar_t* grad_out, const int32_t* idx,
                                       const scalar_t* weight, scalar_t* grad, int64_t b,
                                       int64_t c, int64_t m, int64_t n, cudaStream_t stream) {
  const int64_t total = b * c * n;
  if (total == 0) return;
  interpolate_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
      grad_out, idx, weight, grad, c, m, n, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                          \
  template void launch_three_nn<T>(const T*, const T*, T*, int32_t*, int64_t, int64_t, int64_t, \
                                   cudaStream_t);                                               \
  template void launch_three_interpolate<T>(const T*, const int32_t*, const T*, T*, int64_t,    \
                                            int64_t, int64_t, int64_t, cudaStream_t);           \
  template void launch_three_interpolate_backward<T>(const T*, const int32_t*, const T*, T*,    \
                                                     int64_t, int64_t, int64_t, int64_t,        \
                                                     cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
