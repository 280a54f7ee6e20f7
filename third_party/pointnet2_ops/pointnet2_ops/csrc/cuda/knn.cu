// CUDA k-nearest neighbours: ascending squared distances, ties broken by the lower index.
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

// One thread per query; its output row is the sorted candidate list (insertion sort).
template <typename scalar_t>
__global__ void knn_kernel(const scalar_t* __restrict__ query,
                           const scalar_t* __restrict__ support, scalar_t* __restrict__ dist2,
                           int32_t* __restrict__ idx, int64_t m, int64_t n, int64_t k,
                           int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* p = query + 3 * q;
  const scalar_t* pts = support + (q / m) * n * 3;
  scalar_t* best = dist2 + q * k;
  int32_t* best_i = idx + q * k;
  int64_t filled = 0;
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t d = sq_dist(p, pts + 3 * j);
    if (filled == k && !(d < best[k - 1])) continue;
    // Insert after every entry <= d, so equal distances keep index order.
    int64_t pos = filled < k ? filled++ : k - 1;
    for (; pos > 0 && best[pos - 1] > d; --pos) {
      best[pos] = best[pos - 1];
      best_i[pos] = best_i[pos - 1];
    }
    best[pos] = d;
    best_i[pos] = static_cast<int32_t>(j);
  }
}

}  // namespace

template <typename scalar_t>
void launch_knn(const scalar_t* query, const scalar_t* support, scalar_t* dist2, int32_t* idx,
                int64_t b, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  const int64_t total = b * m;
  if (total == 0) return;
  knn_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(query, support, dist2, idx,
                                                                   m, n, k, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                         \
  template void launch_knn<T>(const T*, const T*, T*, int32_t*, int64_t, int64_t, int64_t,    \
                              int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
