// CUDA k-nearest neighbours: ascending squared distances, ties broken by the lower index.
//
// Both kernels replay the CPU kernel's insertion sort (csrc/cpu/knn.cpp) step for step, over
// the support points in index order with the same distance arithmetic, so results are
// bit-identical to the CPU kernel, ties and NaNs included.
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

constexpr int kKnnThreads = 128;  // queries per block, and support points per shared-memory tile
constexpr int kMaxRegisterK = 32;  // larger k uses knn_global_kernel

// The k best (distance, index) pairs so far, in registers: every loop over the K slots is
// unrolled, so no slot is indexed at run time. The logic is the CPU kernel's: `filled` valid
// entries, and a new pair goes after every entry <= d, dropping the last one when full.
template <typename scalar_t, int K>
struct RegisterTopK {
  scalar_t dist[K];
  int32_t index[K];
  scalar_t worst = 0;  // dist[k - 1] once filled == k (the only slot read when full)
  int filled = 0;
  int k;

  __device__ __forceinline__ explicit RegisterTopK(int k_) : k(k_) {
#pragma unroll
    for (int s = 0; s < K; ++s) {
      dist[s] = 0;
      index[s] = 0;
    }
  }

  __device__ __forceinline__ void push(scalar_t d, int32_t j) {
    if (filled == k && !(d < worst)) return;
    const int pos = filled < k ? filled++ : k - 1;
    bool placed = false;
#pragma unroll
    for (int s = K - 1; s > 0; --s) {
      if (s <= pos && !placed) {
        if (dist[s - 1] > d) {
          dist[s] = dist[s - 1];
          index[s] = index[s - 1];
        } else {
          dist[s] = d;
          index[s] = j;
          placed = true;
        }
      }
    }
    if (!placed) {
      dist[0] = d;
      index[0] = j;
    }
    if (filled == k) {
#pragma unroll
      for (int s = 0; s < K; ++s) {
        if (s == k - 1) worst = dist[s];
      }
    }
  }

  __device__ __forceinline__ void write(scalar_t* dist_row, int32_t* index_row) const {
#pragma unroll
    for (int s = 0; s < K; ++s) {
      if (s < k) {
        dist_row[s] = dist[s];
        index_row[s] = index[s];
      }
    }
  }
};

// k <= kMaxRegisterK: one thread per query, blocks of kKnnThreads queries of one cloud; the
// cloud's support points stream through shared memory in tiles that every thread reads in order.
template <typename scalar_t>
__global__ void __launch_bounds__(kKnnThreads)
    knn_register_kernel(const scalar_t* __restrict__ query, const scalar_t* __restrict__ support,
                        scalar_t* __restrict__ dist2, int32_t* __restrict__ idx, int64_t m,
                        int64_t n, int k, int64_t blocks_per_cloud) {
  __shared__ scalar_t tile[3 * kKnnThreads];
  const int64_t b = blockIdx.x / blocks_per_cloud;
  const int64_t q = (blockIdx.x % blocks_per_cloud) * kKnnThreads + threadIdx.x;
  const bool active = q < m;  // inactive threads still load tiles and reach every barrier
  scalar_t p[3] = {0, 0, 0};
  if (active) {
    const scalar_t* src = query + (b * m + q) * 3;
    p[0] = src[0];
    p[1] = src[1];
    p[2] = src[2];
  }
  const scalar_t* pts = support + b * n * 3;
  RegisterTopK<scalar_t, kMaxRegisterK> top(k);
  for (int64_t start = 0; start < n; start += kKnnThreads) {
    const int count = static_cast<int>(n - start < kKnnThreads ? n - start : kKnnThreads);
    __syncthreads();  // every thread is done with the previous tile
    for (int e = threadIdx.x; e < 3 * count; e += kKnnThreads) tile[e] = pts[3 * start + e];
    __syncthreads();
    if (!active) continue;
    for (int t = 0; t < count; ++t) {
      top.push(sq_dist(p, tile + 3 * t), static_cast<int32_t>(start + t));
    }
  }
  if (active) top.write(dist2 + (b * m + q) * k, idx + (b * m + q) * k);
}

// Any k: one thread per query; its output row is the sorted candidate list (insertion sort),
// with the threshold dist2[k - 1] cached in a register.
template <typename scalar_t>
__global__ void knn_global_kernel(const scalar_t* __restrict__ query,
                                  const scalar_t* __restrict__ support,
                                  scalar_t* __restrict__ dist2, int32_t* __restrict__ idx,
                                  int64_t m, int64_t n, int64_t k, int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* p = query + 3 * q;
  const scalar_t* pts = support + (q / m) * n * 3;
  scalar_t* best = dist2 + q * k;
  int32_t* best_i = idx + q * k;
  int64_t filled = 0;
  scalar_t worst = 0;
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t d = sq_dist(p, pts + 3 * j);
    if (filled == k && !(d < worst)) continue;
    // Insert after every entry <= d, so equal distances keep index order.
    int64_t pos = filled < k ? filled++ : k - 1;
    for (; pos > 0 && best[pos - 1] > d; --pos) {
      best[pos] = best[pos - 1];
      best_i[pos] = best_i[pos - 1];
    }
    best[pos] = d;
    best_i[pos] = static_cast<int32_t>(j);
    if (filled == k) worst = best[k - 1];
  }
}

}  // namespace

template <typename scalar_t>
void launch_knn(const scalar_t* query, const scalar_t* support, scalar_t* dist2, int32_t* idx,
                int64_t b, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  const int64_t total = b * m;
  if (total == 0) return;
  if (k <= kMaxRegisterK) {
    const int64_t blocks_per_cloud = (m + kKnnThreads - 1) / kKnnThreads;
    knn_register_kernel<scalar_t>
        <<<static_cast<unsigned int>(b * blocks_per_cloud), kKnnThreads, 0, stream>>>(
            query, support, dist2, idx, m, n, static_cast<int>(k), blocks_per_cloud);
  } else {
    knn_global_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        query, support, dist2, idx, m, n, k, total);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                         \
  template void launch_knn<T>(const T*, const T*, T*, int32_t*, int64_t, int64_t, int64_t,    \
                              int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
