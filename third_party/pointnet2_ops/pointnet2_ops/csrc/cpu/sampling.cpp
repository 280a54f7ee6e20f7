// CPU sampling ops: furthest point sampling and gathering features at sampled indices.
#include <atomic>
#include <cstring>
#include <vector>

#include "../checks.h"
#include "../pointnet2_ops.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {
namespace {

// Points per block of the FPS scan: each block's maximum is a branch-free SIMD reduction, and
// only the winning block is rescanned for its lowest index.
constexpr int64_t kFpsBlock = 128;

// FPS on one cloud. `xyz` is (n, 3); `out` receives m indices.
template <typename scalar_t>
void fps_cloud(const scalar_t* xyz, int64_t n, int64_t m, int32_t* out) {
  using Vec = typename Simd<scalar_t>::type;
  constexpr int64_t kLanes = Simd<scalar_t>::kLanes;
  static_assert(kFpsBlock % kLanes == 0, "blocks must hold whole vectors");
  // Structure-of-arrays copy padded to whole blocks. Padding has min_d = -1, which stays -1
  // (min with a distance >= 0) and so can never be selected.
  const int64_t padded = (n + kFpsBlock - 1) / kFpsBlock * kFpsBlock;
  std::vector<scalar_t> buffer(4 * padded, scalar_t(0));
  scalar_t* const xs = buffer.data();
  scalar_t* const ys = xs + padded;
  scalar_t* const zs = ys + padded;
  scalar_t* const min_d = zs + padded;  // running min squared distance to the selected set
  for (int64_t k = 0; k < padded; ++k) {
    if (k < n) {
      xs[k] = xyz[3 * k];
      ys[k] = xyz[3 * k + 1];
      zs[k] = xyz[3 * k + 2];
    }
    min_d[k] = k < n ? static_cast<scalar_t>(1e10) : scalar_t(-1);
  }
  int64_t last = 0;
  out[0] = 0;
  for (int64_t j = 1; j < m; ++j) {
    const Vec px = Vec{} + xs[last], py = Vec{} + ys[last], pz = Vec{} + zs[last];
    scalar_t best = -1;
    int64_t best_block = 0;
    for (int64_t start = 0; start < padded; start += kFpsBlock) {
      Vec block_max = Vec{} - 1;
      for (int64_t k = start; k < start + kFpsBlock; k += kLanes) {
        Vec x, y, z, old;
        std::memcpy(&x, xs + k, sizeof(Vec));
        std::memcpy(&y, ys + k, sizeof(Vec));
        std::memcpy(&z, zs + k, sizeof(Vec));
        std::memcpy(&old, min_d + k, sizeof(Vec));
        const Vec dx = x - px, dy = y - py, dz = z - pz;
        const Vec d = dx * dx + dy * dy + dz * dz;  // same order as sq_dist
        const Vec t = d < old ? d : old;            // like fminf: a NaN distance is ignored
        std::memcpy(min_d + k, &t, sizeof(Vec));
        block_max = t > block_max ? t : block_max;
      }
      scalar_t bmax = block_max[0];
      for (int64_t l = 1; l < kLanes; ++l) bmax = block_max[l] > bmax ? block_max[l] : bmax;
      if (bmax > best) {  // strict: an earlier block keeps ties
        best = bmax;
        best_block = start;
      }
    }
    // Lowest index attaining the maximum. Real points always hold a min_d in [0, 1e10] (NaN
    // distances are ignored), so `best` is an exact copy of one of them in `best_block`.
    int64_t k = best_block;
    while (min_d[k] != best) ++k;
    last = k;
    out[j] = static_cast<int32_t>(k);
  }
}

}  // namespace

at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t npoint) {
  check_points_input(xyz, "xyz");
  const int64_t b = xyz.size(0), n = xyz.size(1);
  TORCH_CHECK(npoint > 0 && npoint <= n, "npoint must be in [1, N]");
  at::Tensor out = at::empty({b, npoint}, xyz.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "furthest_point_sample_cpu", [&] {
    const scalar_t* src = xyz.data_ptr<scalar_t>();
    int32_t* dst = out.data_ptr<int32_t>();
    // Clouds are handed out one at a time rather than in fixed per-thread ranges, so a thread
    // slowed down by other load does not hold the others back.
    std::atomic<int64_t> next_cloud{0};
    at::parallel_for(0, b, 1, [&](int64_t, int64_t) {
      for (int64_t i = next_cloud++; i < b; i = next_cloud++) {
        fps_cloud(src + i * n * 3, n, npoint, dst + i * npoint);
      }
    });
  });
  return out;
}

at::Tensor gather_points(const at::Tensor& features, const at::Tensor& idx) {
  check_values_and_index(features, 3, idx, 2);
  const int64_t b = features.size(0), c = features.size(1), n = features.size(2);
  check_index_range(idx, n);
  const int64_t m = idx.size(1);
  at::Tensor out = at::empty({b, c, m}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_points_cpu", [&] {
    const scalar_t* src = features.data_ptr<scalar_t>();
    const int32_t* ids = idx.data_ptr<int32_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, b * c, grain_for(m), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int32_t* row_ids = ids + (row / c) * m;
        for (int64_t j = 0; j < m; ++j) dst[row * m + j] = src[row * n + row_ids[j]];
      }
    });
  });
  return out;
}

at::Tensor gather_points_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  check_backward_shapes(grad_out, idx);
  check_index_range(idx, n);
  const int64_t b = grad_out.size(0), c = grad_out.size(1), m = grad_out.size(2);
  at::Tensor grad = at::zeros({b, c, n}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "gather_points_backward_cpu", [&] {
    const scalar_t* src = grad_out.data_ptr<scalar_t>();
    const int32_t* ids = idx.data_ptr<int32_t>();
    scalar_t* dst = grad.data_ptr<scalar_t>();
    // One (batch, channel) row per task: rows never share output, so no atomics are needed.
    at::parallel_for(0, b * c, grain_for(m), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int32_t* row_ids = ids + (row / c) * m;
        for (int64_t j = 0; j < m; ++j) dst[row * n + row_ids[j]] += src[row * m + j];
      }
    });
  });
  return grad;
}

}  // namespace pointnet2_ops::cpu
