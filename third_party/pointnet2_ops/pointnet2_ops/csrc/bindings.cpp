// Python bindings: each op dispatches to the CPU or CUDA kernel by its first tensor's device.
// torch's pybind11 setup with the at::Tensor casters; much lighter than torch/extension.h.
//
// Errors: every op runs inside `guarded`, which turns c10 and std exceptions into Python
// exceptions here (PyErr_SetString + error_already_set) instead of leaving them to torch's
// pybind11 exception translator. That translator only reaches this module when its pybind11
// internals are shared with torch's (same internals version and platform ABI id), so the
// mapping of TORCH_CHECK_INDEX to IndexError would otherwise depend on the toolchain.
#include <c10/util/Exception.h>
#include <torch/csrc/utils/pybind.h>

#include <exception>

#include "pointnet2_ops.h"

namespace pointnet2_ops {
namespace {

bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool with_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

// True when `t` must run on the CUDA kernels; rejects CUDA tensors in a CPU-only build.
bool use_cuda(const at::Tensor& t) {
  TORCH_CHECK(t.is_cpu() || (t.is_cuda() && with_cuda()), "pointnet2_ops kernels for device ",
              t.device(), " are not built; use the reference backend");
  return t.is_cuda();
}

#ifdef WITH_CUDA
#define DISPATCH(fn, t, ...) (use_cuda(t) ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
#define DISPATCH(fn, t, ...) (use_cuda(t), cpu::fn(__VA_ARGS__))
#endif

at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t npoint) {
  return DISPATCH(furthest_point_sample, xyz, xyz, npoint);
}

at::Tensor gather_points(const at::Tensor& features, const at::Tensor& idx) {
  return DISPATCH(gather_points, features, features, idx);
}

at::Tensor gather_points_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  return DISPATCH(gather_points_backward, grad_out, grad_out, idx, n);
}

at::Tensor ball_query(double radius, int64_t nsample, const at::Tensor& xyz,
                      const at::Tensor& new_xyz) {
  return DISPATCH(ball_query, xyz, radius, nsample, xyz, new_xyz);
}

at::Tensor group_points(const at::Tensor& features, const at::Tensor& idx) {
  return DISPATCH(group_points, features, features, idx);
}

at::Tensor group_points_backward(const at::Tensor& grad_out, const at::Tensor& idx, int64_t n) {
  return DISPATCH(group_points_backward, grad_out, grad_out, idx, n);
}

std::tuple<at::Tensor, at::Tensor> three_nn(const at::Tensor& unknown, const at::Tensor& known) {
  return DISPATCH(three_nn, unknown, unknown, known);
}

at::Tensor three_interpolate(const at::Tensor& features, const at::Tensor& idx,
                             const at::Tensor& weight) {
  return DISPATCH(three_interpolate, features, features, idx, weight);
}

at::Tensor three_interpolate_backward(const at::Tensor& grad_out, const at::Tensor& idx,
                                      const at::Tensor& weight, int64_t m) {
  return DISPATCH(three_interpolate_backward, grad_out, grad_out, idx, weight, m);
}

std::tuple<at::Tensor, at::Tensor> knn(const at::Tensor& query, const at::Tensor& support,
                                       int64_t k) {
  return DISPATCH(knn, query, query, support, k);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> chamfer_distance(const at::Tensor& a,
                                                                            const at::Tensor& b) {
  return DISPATCH(chamfer_distance, a, a, b);
}

std::tuple<at::Tensor, at::Tensor> rasterize_points(const at::Tensor& pixels, int64_t height,
                                                    int64_t width, int64_t footprint) {
  return DISPATCH(rasterize_points, pixels, pixels, height, width, footprint);
}

std::tuple<at::Tensor, at::Tensor> splat_weighted_depth(const at::Tensor& pixels, int64_t height,
                                                        int64_t width, int64_t footprint) {
  return DISPATCH(splat_weighted_depth, pixels, pixels, height, width, footprint);
}

std::tuple<at::Tensor, at::Tensor> splat_sum_depth(const at::Tensor& pixels, int64_t height,
                                                   int64_t width, int64_t footprint) {
  return DISPATCH(splat_sum_depth, pixels, pixels, height, width, footprint);
}

#undef DISPATCH

// Sets a Python exception of `type` with `message`, then unwinds to pybind11 (GIL held).
[[noreturn]] void throw_python_error(PyObject* type, const char* message) {
  PyErr_SetString(type, message);
  throw py::error_already_set();
}

template <auto Fn>
struct Guarded;

// Runs `Fn` with the GIL released (the kernels never touch Python objects) and maps its
// exceptions to IndexError / ValueError / TypeError / RuntimeError, messages without C++ backtraces.
template <typename R, typename... Args, R (*Fn)(Args...)>
struct Guarded<Fn> {
  static R call(Args... args) {
    try {
      py::gil_scoped_release nogil;
      return Fn(args...);
    } catch (const c10::IndexError& e) {
      throw_python_error(PyExc_IndexError, e.what_without_backtrace());
    } catch (const c10::ValueError& e) {
      throw_python_error(PyExc_ValueError, e.what_without_backtrace());
    } catch (const c10::TypeError& e) {
      throw_python_error(PyExc_TypeError, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      throw_python_error(PyExc_RuntimeError, e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw_python_error(PyExc_RuntimeError, e.what());
    }
  }
};

template <auto Fn>
constexpr auto guarded = &Guarded<Fn>::call;

}  // namespace
}  // namespace pointnet2_ops

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace p = pointnet2_ops;
  using p::guarded;
  m.doc() = "pointnet2_ops native kernels (CPU, and CUDA when built with it).";
  m.def("with_cuda", &p::with_cuda, "Whether the CUDA kernels were compiled in.");
  m.def("with_openmp", &p::with_openmp, "Whether the CPU kernels were compiled with OpenMP.");
  m.def("furthest_point_sample", guarded<&p::furthest_point_sample>,
        "xyz (B,N,3), npoint -> idx (B,npoint) int32");
  m.def("gather_points", guarded<&p::gather_points>, "features (B,C,N), idx (B,M) -> (B,C,M)");
  m.def("gather_points_backward", guarded<&p::gather_points_backward>,
        "grad_out (B,C,M), idx (B,M), N -> (B,C,N)");
  m.def("ball_query", guarded<&p::ball_query>,
        "radius, nsample, xyz (B,N,3), new_xyz (B,M,3) -> idx (B,M,nsample) int32");
  m.def("group_points", guarded<&p::group_points>,
        "features (B,C,N), idx (B,M,K) -> (B,C,M,K)");
  m.def("group_points_backward", guarded<&p::group_points_backward>,
        "grad_out (B,C,M,K), idx (B,M,K), N -> (B,C,N)");
  m.def("three_nn", guarded<&p::three_nn>,
        "unknown (B,n,3), known (B,m,3) -> (dist2, idx), each (B,n,3)");
  m.def("three_interpolate", guarded<&p::three_interpolate>,
        "features (B,C,m), idx (B,n,3), weight (B,n,3) -> (B,C,n)");
  m.def("three_interpolate_backward", guarded<&p::three_interpolate_backward>,
        "grad_out (B,C,n), idx (B,n,3), weight (B,n,3), m -> (B,C,m)");
  m.def("knn", guarded<&p::knn>,
        "query (B,M,3), support (B,N,3), k -> (dist2, idx), each (B,M,k)");
  m.def("chamfer_distance", guarded<&p::chamfer_distance>,
        "a (B,N,3), b (B,M,3) -> (dist_ab (B,N), idx_ab (B,N) int64, dist_ba (B,M), "
        "idx_ba (B,M) int64): squared distance to, and index of, the nearest point of the other "
        "cloud");
  m.def("rasterize_points", guarded<&p::rasterize_points>,
        "pixels (B,N,3) [col, row, depth], height, width, footprint -> "
        "(zbuf (B,H,W) float32, index (B,H,W) int64)");
  m.def("splat_weighted_depth", guarded<&p::splat_weighted_depth>,
        "pixels (B,N,3) [col, row, depth], height, width, footprint -> "
        "(value (B,H,W) float32 inverse-depth-weighted depth, index (B,H,W) int64)");
  m.def("splat_sum_depth", guarded<&p::splat_sum_depth>,
        "pixels (B,N,3) [col, row, depth], height, width, footprint -> "
        "(value (B,H,W) float32 sum of the covering depths, count (B,H,W) int64)");
}
