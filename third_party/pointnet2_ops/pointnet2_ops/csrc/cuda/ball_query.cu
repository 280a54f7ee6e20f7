// CUDA ball query: the first `nsample` points (in index order) strictly inside each ball.
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

// One thread per centre; `idx` is zero-initialised, so a ball without hits stays all zeros.
template <typename scalar_t>
__global__ void ball_query_kernel(const scalar_t* __restrict__ xyz,
                                  const scalar_t* __restrict__ new_xyz,
                                  int32_t* __restrict__ idx, int64_t n, int64_t m,
                                  int64_t nsample, scalar_t r2, int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* c = new_xyz + 3 * q;
  const scalar_t* p = xyz + (q / m) * n * 3;
  int32_t* row = idx + q * nsample;
  int64_t cnt = 0;
  for (int64_t k = 0; k < n && cnt < nsample; ++k) {
    if (sq_dist(c, p + 3 * k) < r2) row[cnt++] = static_cast<int32_t>(k);
  }
  // Pad the unused slots with the first hit.
  for (int64_t s = cnt; cnt > 0 && s < nsample; ++s) row[s] = row[0];
}

}  // namespace

template <typename scalar_t>
void launch_ball_query(const scalar_t* xyz, const scalar_t* new_xyz, int32_t* idx, int64_t b,
                       int64_t n, int64_t m, int64_t nsample, scalar_t radius,
                       cudaStream_t stream) {
  const int64_t total = b * m;
  if (total == 0) return;
  ball_query_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
      xyz, new_xyz, idx, n, m, nsample, radius * radius, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                         \
  template void launch_ball_query<T>(const T*, const T*, int32_t*, int64_t, int64_t, int64_t,  \
                                     int64_t, T, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
