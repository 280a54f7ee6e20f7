// CUDA point rasterisers: each point covers a footprint x footprint pixel square.
//   rasterize_points:     every pixel keeps the nearest covering point (minimum float32 depth,
//                         ties to the lower point index).
//   splat_weighted_depth: every pixel gets sum_i w_i z_i / sum_i w_i, w_i = 1 / z_i, over its
//                         covering points (float64 atomicAdd sums), plus rasterize_points' index.
//   splat_sum_depth:      every pixel gets sum_i z_i over its covering points, depths of any sign
//                         (float64 atomicAdd sums), plus the number of covering points.
//
// A pixel's winner is the minimum of the 64-bit keys (depth bits << 32 | point index): positive
// floats order like their bit patterns as uint32, so one atomicMin resolves depth and ties.
#include "../raster_common.h"
#include "cuda_common.cuh"
#include "launchers.h"

namespace pointnet2_ops::cuda {
namespace {

constexpr unsigned long long kEmptyKey = ~0ull;  // all bits set: int64 -1, loses every atomicMin

// One thread per point: atomicMin of its key into every covered pixel of `keys` (B, H, W).
template <typename scalar_t>
__global__ void splat_kernel(const scalar_t* __restrict__ pixels, unsigned long long* keys,
                             int64_t n, int64_t height, int64_t width, int64_t footprint,
                             int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* p = pixels + 3 * q;
  float depth;
  PixelSpan rows, cols;
  if (!visible_depth(p[2], &depth) || !footprint_span(p[1], footprint, height, &rows) ||
      !footprint_span(p[0], footprint, width, &cols)) {
    return;
  }
  const unsigned long long key =
      (static_cast<unsigned long long>(__float_as_uint(depth)) << 32) |
      static_cast<unsigned long long>(q % n);
  unsigned long long* image = keys + (q / n) * height * width;
  for (int64_t r = rows.lo; r <= rows.hi; ++r) {
    for (int64_t c = cols.lo; c <= cols.hi; ++c) atomicMin(image + r * width + c, key);
  }
}

// One thread per pixel: unpacks its key in place into the point index (-1 stays for empty
// pixels) and writes the depth (+inf for empty pixels).
__global__ void resolve_kernel(unsigned long long* keys, float* __restrict__ zbuf,
                               int64_t total) {
  const int64_t pix = thread_index();
  if (pix >= total) return;
  const unsigned long long key = keys[pix];
  if (key == kEmptyKey) {
    zbuf[pix] = INFINITY;
    return;
  }
  zbuf[pix] = __uint_as_float(static_cast<unsigned int>(key >> 32));
  keys[pix] = key & 0xffffffffull;
}

// One thread per point: adds w z and w (w = 1 / z) to every covered pixel of the (B, H, W)
// sums `num` and `den` (CLIP2Point Eq. 8).
template <typename scalar_t>
__global__ void weight_kernel(const scalar_t* __restrict__ pixels, double* num, double* den,
                              int64_t n, int64_t height, int64_t width, int64_t footprint,
                              int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* p = pixels + 3 * q;
  float depth;
  PixelSpan rows, cols;
  if (!visible_depth(p[2], &depth) || !footprint_span(p[1], footprint, height, &rows) ||
      !footprint_span(p[0], footprint, width, &cols)) {
    return;
  }
  const double z = depth, w = 1.0 / z;
  const double wz = w * z;
  const int64_t image = (q / n) * height * width;
  for (int64_t r = rows.lo; r <= rows.hi; ++r) {
    for (int64_t c = cols.lo; c <= cols.hi; ++c) {
      atomicAdd(num + image + r * width + c, wz);
      atomicAdd(den + image + r * width + c, w);
    }
  }
}

// One thread per pixel: the weighted depth where a point covers the pixel, +inf elsewhere.
__global__ void weighted_value_kernel(const int64_t* __restrict__ index,
                                      const double* __restrict__ num,
                                      const double* __restrict__ den, float* __restrict__ value,
                                      int64_t total) {
  const int64_t pix = thread_index();
  if (pix >= total) return;
  value[pix] = index[pix] >= 0 ? static_cast<float>(num[pix] / den[pix]) : INFINITY;
}

// One thread per point: adds its float32-rounded depth (any finite sign) and 1 to every covered
// pixel of the (B, H, W) `sums` and `count`.
template <typename scalar_t>
__global__ void sum_kernel(const scalar_t* __restrict__ pixels, double* sums,
                           unsigned long long* count, int64_t n, int64_t height, int64_t width,
                           int64_t footprint, int64_t total) {
  const int64_t q = thread_index();
  if (q >= total) return;
  const scalar_t* p = pixels + 3 * q;
  float depth;
  PixelSpan rows, cols;
  if (!finite_depth(p[2], &depth) || !footprint_span(p[1], footprint, height, &rows) ||
      !footprint_span(p[0], footprint, width, &cols)) {
    return;
  }
  const double z = depth;
  const int64_t image = (q / n) * height * width;
  for (int64_t r = rows.lo; r <= rows.hi; ++r) {
    for (int64_t c = cols.lo; c <= cols.hi; ++c) {
      atomicAdd(sums + image + r * width + c, z);
      atomicAdd(count + image + r * width + c, 1ull);
    }
  }
}

// One thread per pixel: the float64 sum rounded to float32.
__global__ void sum_value_kernel(const double* __restrict__ sums, float* __restrict__ value,
                                 int64_t total) {
  const int64_t pix = thread_index();
  if (pix >= total) return;
  value[pix] = static_cast<float>(sums[pix]);
}

}  // namespace

template <typename scalar_t>
void launch_rasterize_points(const scalar_t* pixels, int64_t* index, float* zbuf, int64_t b,
                             int64_t n, int64_t height, int64_t width, int64_t footprint,
                             cudaStream_t stream) {
  // `index` enters filled with -1 (== kEmptyKey) and holds the packed keys until resolved;
  // int64 and unsigned long long share size and representation.
  auto* keys = reinterpret_cast<unsigned long long*>(index);
  const int64_t points = b * n, image_pixels = b * height * width;
  if (points > 0) {
    splat_kernel<scalar_t><<<blocks_for(points), kThreads, 0, stream>>>(
        pixels, keys, n, height, width, footprint, points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (image_pixels > 0) {
    resolve_kernel<<<blocks_for(image_pixels), kThreads, 0, stream>>>(keys, zbuf, image_pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename scalar_t>
void launch_splat_weighted_depth(const scalar_t* pixels, int64_t* index, float* value,
                                 double* sums, int64_t b, int64_t n, int64_t height,
                                 int64_t width, int64_t footprint, cudaStream_t stream) {
  // The nearest points' indices (and, in `value` as scratch, their depths) first.
  launch_rasterize_points(pixels, index, value, b, n, height, width, footprint, stream);
  const int64_t points = b * n, image_pixels = b * height * width;
  double* num = sums;
  double* den = sums + image_pixels;
  if (points > 0) {
    weight_kernel<scalar_t><<<blocks_for(points), kThreads, 0, stream>>>(
        pixels, num, den, n, height, width, footprint, points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (image_pixels > 0) {
    weighted_value_kernel<<<blocks_for(image_pixels), kThreads, 0, stream>>>(index, num, den,
                                                                            value, image_pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename scalar_t>
void launch_splat_sum_depth(const scalar_t* pixels, int64_t* count, float* value, double* sums,
                            int64_t b, int64_t n, int64_t height, int64_t width,
                            int64_t footprint, cudaStream_t stream) {
  // int64 and unsigned long long share size and representation; counts stay far below 2^63.
  auto* hits = reinterpret_cast<unsigned long long*>(count);
  const int64_t points = b * n, image_pixels = b * height * width;
  if (points > 0) {
    sum_kernel<scalar_t><<<blocks_for(points), kThreads, 0, stream>>>(
        pixels, sums, hits, n, height, width, footprint, points);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (image_pixels > 0) {
    sum_value_kernel<<<blocks_for(image_pixels), kThreads, 0, stream>>>(sums, value,
                                                                       image_pixels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

#define INSTANTIATE(T)                                                                         \
  template void launch_rasterize_points<T>(const T*, int64_t*, float*, int64_t, int64_t,       \
                                           int64_t, int64_t, int64_t, cudaStream_t);           \
  template void launch_splat_weighted_depth<T>(const T*, int64_t*, float*, double*, int64_t,   \
                                               int64_t, int64_t, int64_t, int64_t, cudaStream_t); \
  template void launch_splat_sum_depth<T>(const T*, int64_t*, float*, double*, int64_t, int64_t, \
                                          int64_t, int64_t, int64_t, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace pointnet2_ops::cuda
