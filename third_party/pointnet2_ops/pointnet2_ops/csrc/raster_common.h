// Point-footprint geometry shared by the CPU and CUDA rasterisers (host and device code), so
// every backend covers exactly the same pixels. Deliberately free of ATen (nvcc compile time).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define POINTNET2_OPS_HOST_DEVICE __host__ __device__
#else
#define POINTNET2_OPS_HOST_DEVICE
#endif

namespace pointnet2_ops {

// Inclusive pixel range [lo, hi] along one image axis.
struct PixelSpan {
  int64_t lo, hi;
};

// Pixels covered along one axis by a point at continuous pixel coordinate `coord`: `footprint`
// pixels from floor(coord) - (footprint-1)/2 to floor(coord) + footprint/2, clipped to
// [0, size). Returns false when none is covered (also for NaN and infinite coordinates).
template <typename scalar_t>
POINTNET2_OPS_HOST_DEVICE inline bool footprint_span(scalar_t coord, int64_t footprint,
                                                     int64_t size, PixelSpan* span) {
  const scalar_t centre = floor(coord);
  const scalar_t first = centre - static_cast<scalar_t>((footprint - 1) / 2);
  const scalar_t last = centre + static_cast<scalar_t>(footprint / 2);
  if (!(last >= scalar_t(0) && first <= static_cast<scalar_t>(size - 1))) return false;
  span->lo = first > scalar_t(0) ? static_cast<int64_t>(first) : 0;
  span->hi = last < static_cast<scalar_t>(size - 1) ? static_cast<int64_t>(last) : size - 1;
  return true;
}

// The depth the rasteriser compares: rounded to float32 (the z-buffer's dtype). Returns false
// for points that draw nothing: rounded depth <= 0, infinite or NaN.
template <typename scalar_t>
POINTNET2_OPS_HOST_DEVICE inline bool visible_depth(scalar_t depth, float* rounded) {
  *rounded = static_cast<float>(depth);
  return *rounded > 0.0f && *rounded <= FLT_MAX;
}

// The depth the summing splatter adds: rounded to float32, any sign. Returns false for points
// that draw nothing: rounded depth infinite or NaN.
template <typename scalar_t>
POINTNET2_OPS_HOST_DEVICE inline bool finite_depth(scalar_t depth, float* rounded) {
  *rounded = static_cast<float>(depth);
  return *rounded >= -FLT_MAX && *rounded <= FLT_MAX;
}

}  // namespace pointnet2_ops

#undef POINTNET2_OPS_HOST_DEVICE
