// Device helpers shared by the CUDA kernels (.cu files only). Deliberately free of ATen.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace pointnet2_ops::cuda {

constexpr int kThreads = 256;

// Blocks of kThreads covering `work` items (one item per thread); `work` must be > 0.
inline unsigned int blocks_for(int64_t work) {
  return static_cast<unsigned int>((work + kThreads - 1) / kThreads);
}

// Global index of the calling thread in a 1-D launch.
__device__ __forceinline__ int64_t thread_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}

// Squared distance as ((dx*dx + dy*dy) + dz*dz); the extension is compiled with --fmad=false,
// so no FMA contraction happens and results match the CPU kernels bit for bit.
template <typename scalar_t>
__device__ __forceinline__ scalar_t sq_dist(const scalar_t* a, const scalar_t* b) {
  const scalar_t dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  return dx * dx + dy * dy + dz * dz;
}

}  // namespace pointnet2_ops::cuda
