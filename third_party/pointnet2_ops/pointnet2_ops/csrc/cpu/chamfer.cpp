// CPU Chamfer distance: for every point of either cloud, the squared distance to its nearest
// point of the other cloud and that point's index. Ties go to the lowest index, NaN distances are
// never nearest, and a point with no distance below +inf gets +inf and index 0.
#include <cstring>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../pointnet2_ops.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {
namespace {

// Candidates per step of the scan: two SIMD vectors, i.e. two independent running minima per
// lane, so consecutive compare-and-selects do not wait on each other.
template <typename scalar_t>
constexpr int64_t kStep = 2 * Simd<scalar_t>::kLanes;

// Candidate points of one cloud as coordinate planes xs | ys | zs, each padded with +inf to whole
// steps. A padded point's distance to any query is +inf or NaN, never below a running minimum.
template <typename scalar_t>
class Planes {
 public:
  explicit Planes(int64_t p)
      : p_(p), padded_((p + kStep<scalar_t> - 1) / kStep<scalar_t> * kStep<scalar_t>),
        data_(3 * padded_, std::numeric_limits<scalar_t>::infinity()) {}

  // Loads the (p, 3) points of one cloud.
  void load(const scalar_t* points) {
    scalar_t* xs = data_.data();
    for (int64_t j = 0; j < p_; ++j) {
      xs[j] = points[3 * j];
      xs[padded_ + j] = points[3 * j + 1];
      xs[2 * padded_ + j] = points[3 * j + 2];
    }
  }

  int64_t padded() const { return padded_; }
  const scalar_t* xs() const { return data_.data(); }

 private:
  int64_t p_, padded_;
  std::vector<scalar_t> data_;
};

// The nearest candidate of query point `pq` among `planes`: (squared distance, index).
template <typename scalar_t>
std::pair<scalar_t, int64_t> nearest(const scalar_t* pq, const Planes<scalar_t>& planes) {
  using Vec = typename Simd<scalar_t>::type;
  using IndexVec = typename Simd<scalar_t>::index_type;
  using index_t = typename Simd<scalar_t>::index_scalar;
  constexpr int64_t kLanes = Simd<scalar_t>::kLanes;
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  const int64_t padded = planes.padded();
  const scalar_t* xs = planes.xs();
  const scalar_t* ys = xs + padded;
  const scalar_t* zs = ys + padded;
  const Vec px = Vec{} + pq[0], py = Vec{} + pq[1], pz = Vec{} + pq[2];
  // Slot (v, l) sees candidates v * kLanes + l + k * kStep for k = 0, 1, ... in order and keeps
  // the first of its minima (strict <): its lowest index attaining its minimum.
  Vec best[2] = {Vec{} + inf, Vec{} + inf};
  IndexVec best_j[2] = {IndexVec{}, IndexVec{}};
  index_t first_ids[kStep<scalar_t>];  // the candidate of each slot in the first step
  for (int64_t s = 0; s < kStep<scalar_t>; ++s) first_ids[s] = static_cast<index_t>(s);
  IndexVec ids[2];
  std::memcpy(ids, first_ids, sizeof(ids));
  for (int64_t k = 0; k < padded; k += kStep<scalar_t>) {
    for (int v = 0; v < 2; ++v) {
      Vec x, y, z;
      std::memcpy(&x, xs + k + v * kLanes, sizeof(Vec));
      std::memcpy(&y, ys + k + v * kLanes, sizeof(Vec));
      std::memcpy(&z, zs + k + v * kLanes, sizeof(Vec));
      const Vec dx = px - x, dy = py - y, dz = pz - z;
      const Vec d = dx * dx + dy * dy + dz * dz;  // the order of sq_dist (query - candidate)
      const IndexVec closer = d < best[v];
      best[v] = closer ? d : best[v];
      best_j[v] = closer ? ids[v] : best_j[v];
      ids[v] += static_cast<index_t>(kStep<scalar_t>);
    }
  }
  // The overall minimum, then the lowest index attaining it (branch-free). Slots still at +inf
  // hold index 0, the answer when no distance is below +inf.
  const Vec lane_min = best[1] < best[0] ? best[1] : best[0];
  scalar_t d_min = lane_min[0];
  for (int64_t l = 1; l < kLanes; ++l) d_min = lane_min[l] < d_min ? lane_min[l] : d_min;
  const Vec all_min = Vec{} + d_min;
  const IndexVec none = IndexVec{} + std::numeric_limits<index_t>::max();
  const IndexVec j0 = best[0] == all_min ? best_j[0] : none;
  const IndexVec j1 = best[1] == all_min ? best_j[1] : none;
  const IndexVec lane_j = j1 < j0 ? j1 : j0;
  index_t j_min = lane_j[0];
  for (int64_t l = 1; l < kLanes; ++l) j_min = lane_j[l] < j_min ? lane_j[l] : j_min;
  return {d_min, j_min};
}

// For each of the B * Q query points (B, Q, 3), the nearest of the P candidate points of its
// cloud (B, P, 3); writes dist (B, Q) and idx (B, Q). One task per range of (cloud, query)
// pairs; a task lays out each cloud it meets as planes once.
template <typename scalar_t>
void nearest_all(const scalar_t* query, const scalar_t* points, int64_t b, int64_t q, int64_t p,
                 scalar_t* dist, int64_t* idx) {
  at::parallel_for(0, b * q, grain_for(p), [&](int64_t begin, int64_t end) {
    Planes<scalar_t> planes(p);
    int64_t cloud = begin / q;
    planes.load(points + cloud * p * 3);
    for (int64_t i = begin, next_cloud = (cloud + 1) * q; i < end; ++i) {
      if (i == next_cloud) {
        planes.load(points + ++cloud * p * 3);
        next_cloud += q;
      }
      std::tie(dist[i], idx[i]) = nearest(query + 3 * i, planes);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance(const at::Tensor& a,
                                                                            const at::Tensor& b) {
  check_point_pair(a, "a", b, "b");
  const int64_t batch = a.size(0), n = a.size(1), m = b.size(1);
  TORCH_CHECK(n > 0 && m > 0, "a and b must hold at least one point per cloud");
  // Lane indices are int32 for float32; leave room for the padding.
  TORCH_CHECK(std::max(n, m) <= std::numeric_limits<int32_t>::max() - 64,
              "at most 2^31 - 65 points per cloud");
  const at::TensorOptions index_options = a.options().dtype(at::kLong);
  at::Tensor dist_ab = at::empty({batch, n}, a.options());
  at::Tensor idx_ab = at::empty({batch, n}, index_options);
  at::Tensor dist_ba = at::empty({batch, m}, a.options());
  at::Tensor idx_ba = at::empty({batch, m}, index_options);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "chamfer_distance_cpu", [&] {
    const scalar_t* a_pts = a.data_ptr<scalar_t>();
    const scalar_t* b_pts = b.data_ptr<scalar_t>();
    nearest_all(a_pts, b_pts, batch, n, m, dist_ab.data_ptr<scalar_t>(),
                idx_ab.data_ptr<int64_t>());
    nearest_all(b_pts, a_pts, batch, m, n, dist_ba.data_ptr<scalar_t>(),
                idx_ba.data_ptr<int64_t>());
  });
  return {dist_ab, idx_ab, dist_ba, idx_ba};
}

}  // namespace pointnet2_ops::cpu
