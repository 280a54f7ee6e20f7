// CUDA Chamfer nearest neighbours: for every query point, the squared distance to its nearest
// candidate point of the same cloud and that candidate's index.
//
// Both kernels scan the candidates in index order from +inf with a strict `<` and the distance
// arithmetic of the CPU kernel (csrc/cpu/chamfer.cpp), so results equal the CPU kernel's bit for
// bit: ties go to the lowest index, NaN distances are never nearest, and a query with no distance
// below +inf gets +inf and index 0.
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

constexpr int kTile = 128;  // queries per block, and candidates per shared-memory tile
// Clouds with fewer queries use the flat kernel: a block of one cloud's queries would mostly idle.
constexpr int64_t kMinTiledQueries = kTile / 2;

// Running nearest candidate of one query.
template <typename scalar_t>
struct Nearest {
  scalar_t dist = static_cast<scalar_t>(INFINITY);
  int64_t index = 0;

  __device__ __forceinline__ void push(scalar_t d, int64_t j) {
    if (d < dist) {
      dist = d;
      index = j;
    }
  }
};

// One thread per query, blocks of kTile queries of one cloud; the cloud's candidates stream
// through shared memory in tiles that every thread reads in index order.
template <typename scalar_t>
__global__ void __launch_bounds__(kTile)
    nearest_tiled_kernel(const scalar_t* __restrict__ query, const scalar_t* __restrict__ points,
                         scalar_t* __restrict__ dist, int64_t* __restrict__ idx, int64_t q,
                         int64_t p, int64_t blocks_per_cloud) {
  __shared__ scalar_t tile[3 * kTile];
  const int64_t b = blockIdx.x / blocks_per_cloud;
  const int64_t i = (blockIdx.x % blocks_per_cloud) * kTile + threadIdx.x;
  const bool active = i < q;  // inactive threads still load tiles and reach every barrier
  scalar_t pq[3] = {0, 0, 0};
  if (active) {
    const scalar_t* src = query + (b * q + i) * 3;
    pq[0] = src[0];
    pq[1] = src[1];
    pq[2] = src[2];
  }
  const scalar_t* pts = points + b * p * 3;
  Nearest<scalar_t> best;
  for (int64_t start = 0; start < p; start += kTile) {
    const int count = static_cast<int>(p - start < kTile ? p - start : kTile);
    __syncthreads();  // every thread is done with the previous tile
    for (int e = threadIdx.x; e < 3 * count; e += kTile) tile[e] = pts[3 * start + e];
    __syncthreads();
    if (!active) continue;
    for (int t = 0; t < count; ++t) best.push(sq_dist(pq, tile + 3 * t), start + t);
  }
  if (active) {
    dist[b * q + i] = best.dist;
    idx[b * q + i] = best.index;
  }
}

// One thread per query over all clouds (small clouds: the candidates stay in cache).
template <typename scalar_t>
__global__ void nearest_flat_kernel(const scalar_t* __restrict__ query,
                                    const scalar_t* __restrict__ points,
                                    scalar_t* __restrict__ dist, int64_t* __restrict__ idx,
                                    int64_t q, int64_t p, int64_t total) {
  const int64_t i = thread_index();
  if (i >= total) return;
  const scalar_t* pq = query + 3 * i;
  const scalar_t* pts = points + (i / q) * p * 3;
  Nearest<scalar_t> best;
  for (int64_t j = 0; j < p; ++j) best.push(sq_dist(pq, pts + 3 * j), j);
  dist[i] = best.dist;
  idx[i] = best.index;
}

}  // namespace

template <typename scalar_t>
void launch_chamfer_nearest(const scalar_t* query, const scalar_t* points, scalar_t* dist,
                            int64_t* idx, int64_t b, int64_t q, int64_t p, cudaStream_t stream) {
  const int64_t total = b * q;
  if (total == 0) return;
  if (q >= kMinTiledQueries) {
    const int64_t blocks_per_cloud = (q + kTile - 1) / kTile;
    nearest_tiled_kernel<scalar_t>
        <<<static_cast<unsigned int>(b * blocks_per_cloud), kTile, 0, stream>>>(
            query, points, dist, idx, q, p, blocks_per_cloud);
  } else {
    nearest_flat_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        query, points, dist, idx, q, p, total);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                         \
  template void launch_chamfer_nearest<T>(const T*, const T*, T*, int64_t*, int64_t, int64_t, \
                                          int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
