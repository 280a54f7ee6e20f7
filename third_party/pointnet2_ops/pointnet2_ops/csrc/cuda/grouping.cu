// CUDA grouping: features (B, C, N) gathered at neighbourhood indices (B, M, K).
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

constexpr int64_t kChannelsPerBlock = 16;
constexpr int kPositionsPerThread = 4;
constexpr int64_t kPositionsPerBlock = kThreads * kPositionsPerThread;

// out[b, c, j] = features[b, c, idx[b, j]] with j over M * K. One block per (b, chunk of
// kChannelsPerBlock channels, tile of kPositionsPerBlock positions j); each thread reads its
// kPositionsPerThread indices (kThreads apart) once, then walks the chunk's channels:
// - index loads and index arithmetic are paid once per chunk, not once per output;
// - for every channel a warp's stores are contiguous (coalesced);
// - a block reads each feature row at kPositionsPerBlock random points in a burst, so most of
//   those reads hit the row's sectors already in L1.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    group_kernel(const scalar_t* __restrict__ features, const int32_t* __restrict__ idx,
                 scalar_t* __restrict__ out, int64_t c, int64_t n, int64_t mk, int64_t chunks,
                 int64_t tiles) {
  const int64_t tile = blockIdx.x % tiles, row = blockIdx.x / tiles;  // row = b * chunks + chunk
  const int64_t b = row / chunks, c0 = (row - b * chunks) * kChannelsPerBlock;
  const int64_t c1 = c0 + kChannelsPerBlock < c ? c0 + kChannelsPerBlock : c;
  const int64_t j0 = tile * kPositionsPerBlock + threadIdx.x;
  int32_t at[kPositionsPerThread];
#pragma unroll
  for (int r = 0; r < kPositionsPerThread; ++r) {
    const int64_t j = j0 + r * kThreads;
    at[r] = j < mk ? __ldg(idx + b * mk + j) : 0;
  }
  const scalar_t* src = features + (b * c + c0) * n;
  scalar_t* dst = out + (b * c + c0) * mk + j0;
  for (int64_t ch = c0; ch < c1; ++ch, src += n, dst += mk) {
#pragma unroll
    for (int r = 0; r < kPositionsPerThread; ++r) {
      if (j0 + r * kThreads < mk) dst[r * kThreads] = __ldg(src + at[r]);
    }
  }
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
  const int64_t chunks = (c + kChannelsPerBlock - 1) / kChannelsPerBlock;
  const int64_t tiles = (mk + kPositionsPerBlock - 1) / kPositionsPerBlock;
  if (b * chunks * tiles == 0) return;
  group_kernel<scalar_t><<<static_cast<unsigned int>(b * chunks * tiles), kThreads, 0, stream>>>(
      features, idx, out, c, n, mk, chunks, tiles);
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
