// Deformable RoI pooling (Dai et al. 2017, sec. 2.2) and its position-sensitive variant.
//
// Output bin (ph, pw) of a RoI averages a grid of bilinear samples (RoIAlign style; boxes
// half-pixel aligned, or torchvision's legacy non-aligned boxes of at least one pixel) over the bin
// shifted by (gamma * roi_w * offset[0], gamma * roi_h * offset[1]). Offsets are normalised, one
// (dx, dy) pair per bin: offset [K, 2, pooled_h, pooled_w], x first. The plain variant reads input
// channel c for output channel c; the position-sensitive variant reads channel (c * pooled_h + ph)
// * pooled_w + pw (R-FCN score maps).
#pragma once

#include "bilinear.h"

namespace dcn {

struct RoIPoolShape {
  int channels, height, width;  // input feature map
  int pooled_h, pooled_w;
  int out_channels;    // channels (plain) or channels / (pooled_h * pooled_w) (position-sensitive)
  int sampling_ratio;  // > 0: that many samples per bin side; <= 0: ceil(bin size)
  bool position_sensitive;
  bool aligned;          // half-pixel box offset (RoIAlign aligned=True); else boxes of >= 1 pixel
  double spatial_scale;  // feature-map pixels per input-image pixel
  double gamma;          // offset scale

  DCN_HOST_DEVICE int input_channel(int c, int ph, int pw) const {
    return position_sensitive ? (c * pooled_h + ph) * pooled_w + pw : c;
  }
  // Input entries between the planes output channels c and c + 1 read.
  DCN_HOST_DEVICE int64_t channel_step() const {
    return int64_t(position_sensitive ? pooled_h * pooled_w : 1) * height * width;
  }
};

// One output bin of one RoI, in feature-map pixels.
template <typename A>
struct RoIBin {
  A y, x;                    // top-left corner after the offset shift
  A bin_h, bin_w;            // bin size
  int grid_h, grid_w;        // samples per side
  A dy_doffset, dx_doffset;  // how far the bin moves per unit of normalised offset
};

// Adaptive samples per side: ceil(bin size), 0 for empty or NaN bins, capped at the map size + 1
// so that a huge RoI cannot turn into an unbounded loop (no sample grid finer than a pixel is
// lost).
template <typename A>
DCN_HOST_DEVICE int adaptive_grid(A bin, int limit) {
  const A g = ceil_(bin);
  if (!(g > A(0))) return 0;
  return g < A(limit) ? static_cast<int>(g) : limit;
}

// roi: [batch_index, x1, y1, x2, y2] in input-image pixels; offset: this RoI's [2, ph, pw] offsets
// or nullptr for plain RoIAlign-style average pooling.
template <typename A, typename T>
DCN_HOST_DEVICE RoIBin<A> roi_bin(const RoIPoolShape& s, const T* roi, const T* offset, int ph,
                                  int pw) {
  const A scale = A(s.spatial_scale), shift = s.aligned ? A(0.5) : A(0);
  const A x0 = A(roi[1]) * scale - shift;
  const A y0 = A(roi[2]) * scale - shift;
  A roi_w = (A(roi[3]) - A(roi[1])) * scale;
  A roi_h = (A(roi[4]) - A(roi[2])) * scale;
  if (!s.aligned) {
    roi_w = roi_w > A(1) ? roi_w : A(1);
    roi_h = roi_h > A(1) ? roi_h : A(1);
  }
  RoIBin<A> b;
  b.bin_w = roi_w / A(s.pooled_w);
  b.bin_h = roi_h / A(s.pooled_h);
  b.dx_doffset = A(s.gamma) * roi_w;
  b.dy_doffset = A(s.gamma) * roi_h;
  b.x = x0 + A(pw) * b.bin_w;
  b.y = y0 + A(ph) * b.bin_h;
  if (offset != nullptr) {
    const int bins = s.pooled_h * s.pooled_w, at = ph * s.pooled_w + pw;
    b.x += b.dx_doffset * A(offset[at]);
    b.y += b.dy_doffset * A(offset[bins + at]);
  }
  b.grid_h = s.sampling_ratio > 0 ? s.sampling_ratio : adaptive_grid(b.bin_h, s.height + 1);
  b.grid_w = s.sampling_ratio > 0 ? s.sampling_ratio : adaptive_grid(b.bin_w, s.width + 1);
  return b;
}

template <typename A>
DCN_HOST_DEVICE A roi_bin_count(const RoIBin<A>& b) {
  const int n = b.grid_h * b.grid_w;
  return A(n > 1 ? n : 1);
}

// Calls f(taps) for every sample of the bin on an H x W map.
template <typename A, typename F>
DCN_HOST_DEVICE void for_each_bin_sample(const RoIBin<A>& b, int height, int width, F&& f) {
  for (int iy = 0; iy < b.grid_h; ++iy) {
    const A y = b.y + (A(iy) + A(0.5)) * b.bin_h / A(b.grid_h);
    for (int ix = 0; ix < b.grid_w; ++ix) {
      const A x = b.x + (A(ix) + A(0.5)) * b.bin_w / A(b.grid_w);
      f(border_clamped_taps<A>(height, width, y, x));
    }
  }
}

// ---- per-bin math on one channel plane, over a bin's samples ----
// `samples` visits the bin's taps, samples(f) calling f(taps) for each, and says how many the bin
// averages (samples.count()). The CUDA kernels compute them on the fly (BinSamples); the CPU loops
// compute them once per bin and reuse them for every channel (csrc/cpu/roi_pool_loops.h).

template <typename A>
struct BinSamples {
  RoIBin<A> bin;
  int height, width;
  template <typename F>
  DCN_HOST_DEVICE void operator()(F&& f) const {
    for_each_bin_sample(bin, height, width, f);
  }
  DCN_HOST_DEVICE A count() const { return roi_bin_count(bin); }
};

// Pooled value of the bin on one channel plane.
template <typename A, typename T, typename Samples>
DCN_HOST_DEVICE A roi_bin_average(const T* plane, const Samples& samples) {
  A sum = A(0);
  samples([&](const BilinearTaps<A>& t) { sum += bilinear_sample(plane, t, 1); });
  return sum / samples.count();
}

// Spreads the bin's output gradient over the plane's input gradient.
template <typename A, typename Samples, typename Add>
DCN_HOST_DEVICE void roi_bin_scatter(A* grad_plane, const Samples& samples, A grad, Add add) {
  const A g = grad / samples.count();
  samples([&](const BilinearTaps<A>& t) { bilinear_scatter(grad_plane, t, 1, &g, 1, A(1), add); });
}

// Adds d sample / d (y, x), summed over the bin's samples on one channel plane, to sum_dy / sum_dx.
template <typename A, typename T, typename Samples>
DCN_HOST_DEVICE void roi_bin_coord_grad_sums(const T* plane, const Samples& samples, A& sum_dy,
                                             A& sum_dx) {
  samples([&](const BilinearTaps<A>& t) {
    A gy, gx;
    bilinear_coord_grad(plane, t, 1, gy, gx);
    sum_dy += gy;
    sum_dx += gx;
  });
}

// The bin's offset gradient from d sample / d (y, x) summed over its samples.
template <typename A>
DCN_HOST_DEVICE void roi_bin_offset_grad_from_sums(const RoIBin<A>& b, A sum_dy, A sum_dx,
                                                   A& grad_dx, A& grad_dy) {
  const A n = roi_bin_count(b);
  grad_dx = sum_dx / n * b.dx_doffset;
  grad_dy = sum_dy / n * b.dy_doffset;
}

// ---- whole-op entry points, one output element (RoI n, channel c, bin (ph, pw)) at a time ----
// input [N, C, H, W]; rois [K, 5] with valid batch indices; offset [K, 2, ph, pw] or nullptr.

template <typename A, typename T>
DCN_HOST_DEVICE RoIBin<A> roi_bin_at(const RoIPoolShape& s, const T* rois, const T* offset,
                                     int64_t n, int ph, int pw) {
  const T* roi_offset = offset != nullptr ? offset + n * 2 * s.pooled_h * s.pooled_w : nullptr;
  return roi_bin<A>(s, rois + n * 5, roi_offset, ph, pw);
}

// Start of the input plane that output channel c of RoI n reads at bin (ph, pw); output channel
// c + 1 reads s.channel_step() entries further.
template <typename A, typename T>
DCN_HOST_DEVICE int64_t roi_input_plane(const RoIPoolShape& s, const T* rois, int64_t n, int c,
                                        int ph, int pw) {
  const int64_t batch = static_cast<int64_t>(A(rois[n * 5]));
  return (batch * s.channels + s.input_channel(c, ph, pw)) * s.height * s.width;
}

template <typename A, typename T>
DCN_HOST_DEVICE A roi_pool_output(const RoIPoolShape& s, const T* input, const T* rois,
                                  const T* offset, int64_t n, int c, int ph, int pw) {
  const BinSamples<A> samples{roi_bin_at<A>(s, rois, offset, n, ph, pw), s.height, s.width};
  return roi_bin_average<A>(input + roi_input_plane<A>(s, rois, n, c, ph, pw), samples);
}

// grad_input [N, C, H, W] (accumulation type) += the output element's gradient spread.
template <typename A, typename T, typename Add>
DCN_HOST_DEVICE void roi_pool_scatter(const RoIPoolShape& s, A* grad_input, const T* rois,
                                      const T* offset, int64_t n, int c, int ph, int pw, A grad,
                                      Add add) {
  const BinSamples<A> samples{roi_bin_at<A>(s, rois, offset, n, ph, pw), s.height, s.width};
  roi_bin_scatter(grad_input + roi_input_plane<A>(s, rois, n, c, ph, pw), samples, grad, add);
}

// Offset gradient of bin (ph, pw) of RoI n (whose samples `samples` visits), summed over output
// channels, stored into grad_offset [K, 2, ph, pw]. grad: output gradient [K, out_channels, ph,
// pw].
template <typename A, typename T, typename Samples>
DCN_HOST_DEVICE void roi_pool_offset_grad(const RoIPoolShape& s, const T* input, const T* rois,
                                          const T* grad, int64_t n, int ph, int pw,
                                          const RoIBin<A>& bin, const Samples& samples,
                                          T* grad_offset) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w, at = ph * s.pooled_w + pw;
  const T* first = input + roi_input_plane<A>(s, rois, n, 0, ph, pw);
  A sum_dx = A(0), sum_dy = A(0);
  for (int c = 0; c < s.out_channels; ++c) {
    const A g = A(grad[(n * s.out_channels + c) * bins + at]);
    if (g == A(0)) continue;
    A sy = A(0), sx = A(0);
    roi_bin_coord_grad_sums(first + c * s.channel_step(), samples, sy, sx);
    sum_dy += g * sy;
    sum_dx += g * sx;
  }
  A grad_dx, grad_dy;
  roi_bin_offset_grad_from_sums(bin, sum_dy, sum_dx, grad_dx, grad_dy);
  grad_offset[n * 2 * bins + at] = T(grad_dx);
  grad_offset[(n * 2 + 1) * bins + at] = T(grad_dy);
}

}  // namespace dcn
