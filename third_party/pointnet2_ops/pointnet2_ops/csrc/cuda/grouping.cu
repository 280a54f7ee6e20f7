// CUDA grouping: features (B, C, N) gathered at neighbourhood indices (B, M, K).
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

// out[row, j] = features[row, idx[b, j]] with row = b * C + c and j over M * K.
template <typename scalar_t>
__global__ void group_kernel(const scalar_t* __restrict__ features,
                             const int32_t* __restrict__ idx, scalar_t* __restrict__ out,
                             int64_t c, int64_t n, int64_t mk, int64_t total) {
  const int64_t t = thread_index();
  if (t >= total) return;
  const int64_t row = t / mk, j = t % mk;
  out[t] = features[row * n + idx[(row / c) * mk + j]];
}

template <typename scalar_t>
__global__ void group_backward_kernel(const scalar_t* __restrict__ grad_out,
                                      const int32_t* __restrict__ idx,
                                      scalar_t* __restrict__ grad, int64_t c, int64_t n,
                                      int64_t mk, int64_t total) {
  const int64_t t = thread_index();
  if (t >= total) return;
  const int64_t row = t / mk, j = t % mk;
  atomicAdd(grad + row * n + idx[(row / c) * mk + j], grad_out[t]);
}

}  // namespace

template <typename scalar_t>
void launch_group(const scalar_t* features, const int32_t* idx, scalar_t* out, int64_t b,
                  int64_t c, int64_t n, int64_t mk, cudaStream_t stream) {
  const int64_t total = b * c * mk;
  if (total == 0) return;
  group_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(features, idx, out, c, n,
                                                                     mk, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void launch_group_backward(const scalar_t* grad_out, const int32_t* idx, scalar_t* grad,
                           int64_t b, int64_t c, int64_t n, int64_t mk, cudaStream_t stream) {
  const int64_t total = b * c * mk;
  if (total == 0) return;
  group_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
      grad_out, idx, grad, c, n, mk, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                         \
  template void launch_group<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t,      \
                                int64_t, cudaStream_t);                                        \
  template void launch_group_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t,      \
                                         int64_t, int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
