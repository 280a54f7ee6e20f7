// Helpers shared by the CPU kernels.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace pointnet2_ops::cpu {

// 16-byte SIMD vector (GCC/Clang vector extension): 4 floats or 2 doubles. SSE2 and NEON are
// baseline, so this vectorises without any -march flag. `index_type` is the integer vector of
// the same lane count and width, the type of a comparison's mask.
template <typename scalar_t>
struct Simd {
  typedef scalar_t type __attribute__((vector_size(16)));
  typedef std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t> index_scalar;
  typedef index_scalar index_type __attribute__((vector_size(16)));
  static constexpr int64_t kLanes = 16 / sizeof(scalar_t);
};

// Work per at::parallel_for chunk below which threading does not pay (ATen's GRAIN_SIZE).
constexpr int64_t kGrainWork = 32768;

// Grain size (items per chunk) for at::parallel_for, given the cost of one item.
inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
}

// Rejects any index outside [0, n) before the kernels dereference them (one vectorisable
// min/max pass over the index tensor, so the gather/scatter loops stay branch-free).
inline void check_index_range(const at::Tensor& idx, int64_t n) {
  const int32_t* ids = idx.data_ptr<int32_t>();
  const int64_t count = idx.numel();
  int32_t lo = 0, hi = 0;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, ids[i]);
    hi = std::max(hi, ids[i]);
  }
  TORCH_CHECK_INDEX(lo >= 0 && hi < n, "index ", lo < 0 ? lo : hi, " is out of range [0, ", n,
                    ")");
}

// Squared distance evaluated as ((dx*dx + dy*dy) + dz*dz), the order every backend uses, so
// the CPU, CUDA and reference results agree bit for bit.
template <typename scalar_t>
inline scalar_t sq_dist(scalar_t ax, scalar_t ay, scalar_t az, scalar_t bx, scalar_t by,
                        scalar_t bz) {
  const scalar_t dx = ax - bx, dy = ay - by, dz = az - bz;
  return dx * dx + dy * dy + dz * dz;
}

}  // namespace pointnet2_ops::cpu
