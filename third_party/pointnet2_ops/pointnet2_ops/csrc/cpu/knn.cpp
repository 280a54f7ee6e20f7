// CPU k-nearest neighbours: ascending squared distances, ties broken by the lower index.
#include "../checks.h"
#include "../pointnet2_ops.h"
#include "cpu_common.h"

namespace pointnet2_ops::cpu {

std::tuple<at::Tensor, at::Tensor> knn(const at::Tensor& query, const at::Tensor& support,
                                       int64_t k) {
  check_point_pair(query, "query", support, "support");
  const int64_t b = query.size(0), m = query.size(1), n = support.size(1);
  TORCH_CHECK(k > 0 && k <= n, "k must be in [1, N]");
  at::Tensor dist2 = at::empty({b, m, k}, query.options());
  at::Tensor idx = at::empty({b, m, k}, query.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "knn_cpu", [&] {
    const scalar_t* q_pts = query.data_ptr<scalar_t>();
    const scalar_t* s_pts = support.data_ptr<scalar_t>();
    scalar_t* d_out = dist2.data_ptr<scalar_t>();
    int32_t* i_out = idx.data_ptr<int32_t>();
    at::parallel_for(0, b * m, grain_for(n), [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const scalar_t* p = q_pts + 3 * q;
        const scalar_t* pts = s_pts + (q / m) * n * 3;
        // The output row itself is the sorted candidate list; `filled` entries are valid.
        scalar_t* best = d_out + q * k;
        int32_t* best_i = i_out + q * k;
        int64_t filled = 0;
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t d = sq_dist(p[0], p[1], p[2], pts[3 * j], pts[3 * j + 1], pts[3 * j + 2]);
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
    });
  });
  return {dist2, idx};
}

}  // namespace pointnet2_ops::cpu
