// CPU loops of (position-sensitive) deformable RoI pooling, free of any framework: the forward is
// used by the PyTorch op and the ONNX Runtime op, the backward ones by the PyTorch op. `par` is
// the framework's parallel loop: an object with
// `void run(int64_t begin, int64_t end, int64_t grain, F f) const`.
#pragma once

#include <vector>

#include "../kernels/deform_roi_pool.h"

namespace dcn {

// out [K, out_channels, ph, pw] from input [N, C, H, W], rois [K, 5] (valid batch indices) and
// offset [K, 2, ph, pw] or null. One (RoI, bin) per item: its samples' taps are computed once and
// reused by every output channel, which all sample the same points.
template <typename A, typename Parallel, typename T>
void roi_pool_forward_rows(const Parallel& par, const RoIPoolShape& s, const T* input,
                           const T* rois, const T* offset, int64_t k_rois, T* out) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w, plane = int64_t(s.height) * s.width;
  const int64_t channel_step = s.position_sensitive ? bins * plane : plane;
  par.run(0, k_rois * bins, 4, [&](int64_t lo, int64_t hi) {
    std::vector<BilinearTaps<A>> taps;
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t n = i / bins;
      const int ph = static_cast<int>(i % bins / s.pooled_w);
      const int pw = static_cast<int>(i % s.pooled_w);
      const RoIBin<A> bin = roi_bin_at<A>(s, rois, offset, n, ph, pw);
      taps.clear();
      for_each_bin_sample(bin, s.height, s.width,
                          [&](const BilinearTaps<A>& t) { taps.push_back(t); });
      const A count = roi_bin_count(bin);
      const T* first = input + roi_input_plane<A>(s, rois, n, 0, ph, pw);
      for (int c = 0; c < s.out_channels; ++c) {
        A sum = A(0);
        for (const BilinearTaps<A>& t : taps) sum += bilinear_sample(first + c * channel_step, t, 1);
        out[(n * s.out_channels + c) * bins + ph * s.pooled_w + pw] = T(sum / count);
      }
    }
  });
}

// Fills `taps` with the bin's samples on an H x W map; returns the bin's sample count.
template <typename A>
A collect_bin_taps(const RoIBin<A>& bin, int height, int width,
                   std::vector<BilinearTaps<A>>& taps) {
  taps.clear();
  for_each_bin_sample(bin, height, width, [&](const BilinearTaps<A>& t) { taps.push_back(t); });
  return roi_bin_count(bin);
}

// grad_input [N, C, H, W] (accumulation type) += the spread of grad [K, out_channels, ph, pw].
// Threads own disjoint output channels, hence disjoint input channels: no two write the same
// element. Each thread computes a bin's taps once for all of its channels.
template <typename A, typename Parallel, typename T>
void roi_pool_backward_input_rows(const Parallel& par, const RoIPoolShape& s, const T* grad,
                                  const T* rois, const T* offset, int64_t k_rois, A* grad_input) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w, plane = int64_t(s.height) * s.width;
  const int64_t channel_step = s.position_sensitive ? bins * plane : plane;
  par.run(0, s.out_channels, 1, [&](int64_t lo, int64_t hi) {
    std::vector<BilinearTaps<A>> taps;
    for (int64_t n = 0; n < k_rois; ++n) {
      for (int64_t b = 0; b < bins; ++b) {
        const int ph = static_cast<int>(b / s.pooled_w), pw = static_cast<int>(b % s.pooled_w);
        const A count = collect_bin_taps(roi_bin_at<A>(s, rois, offset, n, ph, pw), s.height,
                                         s.width, taps);
        if (taps.empty()) continue;
        A* first = grad_input + roi_input_plane<A>(s, rois, n, 0, ph, pw);
        for (int64_t c = lo; c < hi; ++c) {
          const A g = A(grad[(n * s.out_channels + c) * bins + b]) / count;
          if (g == A(0)) continue;
          for (const BilinearTaps<A>& t : taps)
            bilinear_scatter(first + c * channel_step, t, 1, &g, 1, A(1), PlainAdd());
        }
      }
    }
  });
}

// grad_offset [K, 2, ph, pw] from grad [K, out_channels, ph, pw]: one (RoI, bin) per item, its
// taps computed once and reused by every channel.
template <typename A, typename Parallel, typename T>
void roi_pool_backward_offset_rows(const Parallel& par, const RoIPoolShape& s, const T* grad,
                                   const T* input, const T* rois, const T* offset, int64_t k_rois,
                                   T* grad_offset) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w, plane = int64_t(s.height) * s.width;
  const int64_t channel_step = s.position_sensitive ? bins * plane : plane;
  par.run(0, k_rois * bins, 4, [&](int64_t lo, int64_t hi) {
    std::vector<BilinearTaps<A>> taps;
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t n = i / bins, b = i % bins;
      const int ph = static_cast<int>(b / s.pooled_w), pw = static_cast<int>(b % s.pooled_w);
      const RoIBin<A> bin = roi_bin_at<A>(s, rois, offset, n, ph, pw);
      collect_bin_taps(bin, s.height, s.width, taps);
      const T* first = input + roi_input_plane<A>(s, rois, n, 0, ph, pw);
      A sum_dx = A(0), sum_dy = A(0);
      for (int c = 0; c < s.out_channels && !taps.empty(); ++c) {
        const A g = A(grad[(n * s.out_channels + c) * bins + b]);
        if (g == A(0)) continue;
        A sy = A(0), sx = A(0);
        for (const BilinearTaps<A>& t : taps) {
          A gy, gx;
          bilinear_coord_grad(first + c * channel_step, t, 1, gy, gx);
          sy += gy;
          sx += gx;
        }
        sum_dx += g * sx;
        sum_dy += g * sy;
      }
      A grad_dx, grad_dy;
      roi_bin_offset_grad_from_sums(bin, sum_dy, sum_dx, grad_dx, grad_dy);
      grad_offset[n * 2 * bins + b] = T(grad_dx);
      grad_offset[(n * 2 + 1) * bins + b] = T(grad_dy);
    }
  });
}

}  // namespace dcn
