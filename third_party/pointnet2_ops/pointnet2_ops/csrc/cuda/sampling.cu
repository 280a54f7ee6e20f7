// CUDA sampling kernels: furthest point sampling and gathering features at indices.
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

constexpr unsigned int kFullMask = 0xffffffffu;

// Keeps the larger value; on equal values the lower index (the CPU kernels' tie rule).
template <typename scalar_t>
__device__ __forceinline__ void argmax_merge(scalar_t& v, int& i, scalar_t ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

template <typename scalar_t>
__device__ __forceinline__ void warp_argmax(scalar_t& v, int& i) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const scalar_t ov = __shfl_down_sync(kFullMask, v, offset);
    const int oi = __shfl_down_sync(kFullMask, i, offset);
    argmax_merge(v, i, ov, oi);
  }
}

// One block per cloud; blockDim.x is a multiple of 32, at most 1024.
template <typename scalar_t>
__global__ void fps_kernel(const scalar_t* __restrict__ xyz, scalar_t* __restrict__ min_d,
                           int32_t* __restrict__ out, int n, int m) {
  __shared__ scalar_t warp_best[32];
  __shared__ int warp_best_i[32];
  __shared__ int selected;
  const int64_t cloud = blockIdx.x;
  xyz += cloud * n * 3;
  min_d += cloud * n;
  out += cloud * m;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int num_warps = blockDim.x >> 5;
  if (tid == 0) out[0] = 0;
  int last = 0;
  for (int j = 1; j < m; ++j) {
    const scalar_t p[3] = {xyz[3 * last], xyz[3 * last + 1], xyz[3 * last + 2]};
    scalar_t best = -1;
    int best_i = 0;
    for (int k = tid; k < n; k += blockDim.x) {
      const scalar_t d = sq_dist(xyz + 3 * k, p);
      const scalar_t old = min_d[k];
      const scalar_t t = d < old ? d : old;  // like the CPU kernel: NaN distances are ignored
      min_d[k] = t;
      if (t > best) {  // strict: this thread's lowest index wins ties
        best = t;
        best_i = k;
      }
    }
    warp_argmax(best, best_i);
    if (lane == 0) {
      warp_best[warp] = best;
      warp_best_i[warp] = best_i;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < num_warps ? warp_best[lane] : scalar_t(-1);
      best_i = lane < num_warps ? warp_best_i[lane] : 0;
      warp_argmax(best, best_i);
      if (lane == 0) {
        selected = best_i;
        out[j] = best_i;
      }
    }
    __syncthreads();  // also orders this step's reads of warp_best before the next step's writes
    last = selected;
  }
}

// grad[row, idx[b, j]] += grad_out[row, j] with row = b * C + c.
template <typename scalar_t>
__global__ void gather_backward_kernel(const scalar_t* __restrict__ grad_out,
                                       const int32_t* __restrict__ idx,
                                       scalar_t* __restrict__ grad, int64_t c, int64_t n,
                                       int64_t m, int64_t total) {
  const int64_t t = thread_index();
  if (t >= total) return;
  const int64_t row = t / m, j = t % m;
  atomicAdd(grad + row * n + idx[(row / c) * m + j], grad_out[t]);
}

// Threads per FPS block: enough warps to cover n, capped at 1024.
int fps_threads(int64_t n) {
  int threads = 32;
  while (threads < n && threads < 1024) threads *= 2;
  return threads;
}

}  // namespace

template <typename scalar_t>
void launch_furthest_point_sample(const scalar_t* xyz, scalar_t* min_d, int32_t* out, int64_t b,
                                  int64_t n, int64_t m, cudaStream_t stream) {
  if (b == 0) return;
  fps_kernel<scalar_t><<<b, fps_threads(n), 0, stream>>>(xyz, min_d, out, static_cast<int>(n),
                                                         static_cast<int>(m));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Gathering is grouping with K = 1 (grouping.cu's coalesced channel-walking kernel).
template <typename scalar_t>
void launch_gather(const scalar_t* features, const int32_t* idx, scalar_t* out, int64_t b,
                   int64_t c, int64_t n, int64_t m, cudaStream_t stream) {
  launch_group(features, idx, out, b, c, n, m, stream);
}

template <typename scalar_t>
void launch_gather_backward(const scalar_t* grad_out, const int32_t* idx, scalar_t* grad,
                            int64_t b, int64_t c, int64_t n, int64_t m, cudaStream_t stream) {
  const int64_t total = b * c * m;
  if (total == 0) return;
  gather_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
      grad_out, idx, grad, c, n, m, total);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define INSTANTIATE(T)                                                                          \
  template void launch_furthest_point_sample<T>(const T*, T*, int32_t*, int64_t, int64_t,       \
                                                int64_t, cudaStream_t);                         \
  template void launch_gather<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t,       \
                                 int64_t, cudaStream_t);                                        \
  template void launch_gather_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t,       \
                                          int64_t, int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
