// CPU ball query: the first `nsample` points (in index order) strictly inside each ball.
#include "../checks.h"
#include "../pointnet2_ops.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {

at::Tensor ball_query(double radius, int64_t nsample, const at::Tensor& xyz,
                      const at::Tensor& new_xyz) {
  check_point_pair(xyz, "xyz", new_xyz, "new_xyz");
  TORCH_CHECK(nsample > 0, "nsample must be positive");
  const int64_t b = xyz.size(0), n = xyz.size(1), m = new_xyz.size(1);
  // Zero-initialised: a ball with no point inside keeps all-zero indices.
  at::Tensor idx = at::zeros({b, m, nsample}, xyz.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "ball_query_cpu", [&] {
    const scalar_t r = static_cast<scalar_t>(radius);
    const scalar_t r2 = r * r;
    const scalar_t* pts = xyz.data_ptr<scalar_t>();
    const scalar_t* centres = new_xyz.data_ptr<scalar_t>();
    int32_t* out = idx.data_ptr<int32_t>();
    at::parallel_for(0, b * m, grain_for(n), [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const scalar_t* c = centres + 3 * q;
        const scalar_t* p = pts + (q / m) * n * 3;
        int32_t* row = out + q * nsample;
        int64_t cnt = 0;
        for (int64_t k = 0; k < n && cnt < nsample; ++k) {
          if (sq_dist(c[0], c[1], c[2], p[3 * k], p[3 * k + 1], p[3 * k + 2]) < r2) {
            row[cnt++] = static_cast<int32_t>(k);
          }
        }
        // Pad the unused slots with the first hit.
        for (int64_t s = cnt; cnt > 0 && s < nsample; ++s) row[s] = row[0];
      }
    });
  });
  return idx;
}

}  // namespace pointnet2_ops::cpu
