// CPU forward loop of (position-sensitive) deformable RoI pooling, free of any framework: used by
// the PyTorch op and the ONNX Runtime op. `par` is the framework's parallel loop (an object with
// `void run(int64_t begin, int64_t end, int64_t grain, F f) const`).
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

}  // namespace dcn
