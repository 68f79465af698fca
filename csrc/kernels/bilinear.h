// Bilinear interpolation of one H x W plane at a fractional point, and its derivatives.
//
// The point is reduced once to four "taps" (index + weight per corner); sampling any number of
// channels at the same point is then a branch-free 4-term dot product, the input gradient is a
// 4-term scatter and the coordinate gradient a 4-term dot product with the weight derivatives.
#pragma once

#include "macros.h"

namespace dcn {

// Corners in the order (y0,x0), (y0,x1), (y1,x0), (y1,x1).
template <typename A>
struct BilinearTaps {
  int idx[4];  // row-major index into the plane; 0 for a corner outside it
  A w[4];      // interpolation weight; 0 for a corner outside the plane
  A wy[4];     // d w / d y; 0 where y does not move the sample (clamped)
  A wx[4];     // d w / d x
};

template <typename A>
DCN_HOST_DEVICE BilinearTaps<A> empty_taps() {
  BilinearTaps<A> t;
  for (int i = 0; i < 4; ++i) {
    t.idx[i] = 0;
    t.w[i] = A(0);
    t.wy[i] = A(0);
    t.wx[i] = A(0);
  }
  return t;
}

// Taps for corners rows {y0, y1} x cols {x0, x1} with fractional parts (ly, lx). row_ok/col_ok say
// which corners lie inside; sy/sx are 0 where the coordinate is clamped (no derivative).
template <typename A>
DCN_HOST_DEVICE BilinearTaps<A> make_taps(int width, int y0, int y1, int x0, int x1, A ly, A lx,
                                          bool row0_ok, bool row1_ok, bool col0_ok, bool col1_ok,
                                          A sy, A sx) {
  const A hy = A(1) - ly, hx = A(1) - lx;
  const bool ok[4] = {row0_ok && col0_ok, row0_ok && col1_ok, row1_ok && col0_ok,
                      row1_ok && col1_ok};
  const int ys[4] = {y0, y0, y1, y1};
  const int xs[4] = {x0, x1, x0, x1};
  const A w[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
  const A wy[4] = {-hx, -lx, hx, lx};
  const A wx[4] = {-hy, hy, -ly, ly};
  BilinearTaps<A> t;
  for (int i = 0; i < 4; ++i) {
    t.idx[i] = ok[i] ? ys[i] * width + xs[i] : 0;
    t.w[i] = ok[i] ? w[i] : A(0);
    t.wy[i] = ok[i] ? sy * wy[i] : A(0);
    t.wx[i] = ok[i] ? sx * wx[i] : A(0);
  }
  return t;
}

// Zero padding: the plane is 0 outside [0, H-1] x [0, W-1], so a point one pixel or more outside
// samples 0. This is deformable convolution's convention (torchvision, ONNX DeformConv).
// Derivatives are one-sided from above at integer coordinates (as torchvision's), which at y = -1
// or x = -1 is the slope towards the first row / column. NaN or infinite coordinates sample 0.
template <typename A>
DCN_HOST_DEVICE BilinearTaps<A> zero_padded_taps(int height, int width, A y, A x) {
  if (!(y >= A(-1) && y < A(height) && x >= A(-1) && x < A(width))) return empty_taps<A>();
  const int y0 = static_cast<int>(floor_(y));
  const int x0 = static_cast<int>(floor_(x));
  return make_taps<A>(width, y0, y0 + 1, x0, x0 + 1, y - A(y0), x - A(x0), y0 >= 0,
                      y0 + 1 <= height - 1, x0 >= 0, x0 + 1 <= width - 1, A(1), A(1));
}

// Border clamping: points within one pixel outside the plane take the nearest border value and
// points further out sample 0. This is RoIAlign's convention, used by the RoI pooling ops.
template <typename A>
DCN_HOST_DEVICE BilinearTaps<A> border_clamped_taps(int height, int width, A y, A x) {
  if (!(y >= A(-1) && y <= A(height) && x >= A(-1) && x <= A(width))) return empty_taps<A>();
  A sy = A(1), sx = A(1);
  if (y <= A(0)) {
    y = A(0);
    sy = A(0);
  }
  if (x <= A(0)) {
    x = A(0);
    sx = A(0);
  }
  int y0 = static_cast<int>(floor_(y)), y1 = y0 + 1;
  int x0 = static_cast<int>(floor_(x)), x1 = x0 + 1;
  A ly = y - A(y0), lx = x - A(x0);
  if (y0 >= height - 1) {
    y0 = y1 = height - 1;
    ly = A(0);
    sy = A(0);
  }
  if (x0 >= width - 1) {
    x0 = x1 = width - 1;
    lx = A(0);
    sx = A(0);
  }
  return make_taps<A>(width, y0, y1, x0, x1, ly, lx, true, true, true, true, sy, sx);
}

// The functions below read or write one channel of an image whose pixel (y, x) of that channel
// sits at data[(y * W + x) * pixel_stride]: pixel_stride is 1 for a channel plane (NCHW) and C for
// a channel of a channels-last image (NHWC, data pointing at the channel).

// Interpolated value at the tapped point.
template <typename A, typename T>
DCN_HOST_DEVICE A bilinear_sample(const T* data, const BilinearTaps<A>& t, int64_t pixel_stride) {
  return t.w[0] * A(data[t.idx[0] * pixel_stride]) + t.w[1] * A(data[t.idx[1] * pixel_stride]) +
         t.w[2] * A(data[t.idx[2] * pixel_stride]) + t.w[3] * A(data[t.idx[3] * pixel_stride]);
}

// d sample / d y and d sample / d x at the tapped point.
template <typename A, typename T>
DCN_HOST_DEVICE void bilinear_coord_grad(const T* data, const BilinearTaps<A>& t,
                                         int64_t pixel_stride, A& gy, A& gx) {
  gy = gx = A(0);
  for (int i = 0; i < 4; ++i) {
    const A v = A(data[t.idx[i] * pixel_stride]);
    gy += t.wy[i] * v;
    gx += t.wx[i] * v;
  }
}

// Non-atomic accumulation for bilinear_scatter, where each thread owns what it writes.
// (A named functor from this header, rather than a lambda at the call site, so that the CPU loops
// compiled for AVX2 / AVX-512 can inline it.)
struct PlainAdd {
  template <typename A>
  DCN_HOST_DEVICE void operator()(A* p, A v) const {
    *p += v;
  }
};

// Adds scale * w_i * values[c] to corner i of channel c of `grad`, for `count` consecutive
// channels (contiguous in a channels-last image; count = 1 for one plane), through
// `add(ptr, value)`: a plain += on the CPU, an atomic add on the GPU.
template <typename A, typename T, typename Add>
DCN_HOST_DEVICE void bilinear_scatter(A* grad, const BilinearTaps<A>& t, int64_t pixel_stride,
                                      const T* values, int count, A scale, Add add) {
  for (int i = 0; i < 4; ++i) {
    if (t.w[i] == A(0)) continue;
    A* dst = grad + t.idx[i] * pixel_stride;
    const A f = scale * t.w[i];
    DCN_SIMD
    for (int c = 0; c < count; ++c) add(dst + c, f * A(values[c]));
  }
}

}  // namespace dcn
