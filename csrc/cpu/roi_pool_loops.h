// CPU loops of (position-sensitive) deformable RoI pooling, free of any framework: the forward
// pieces are used by the PyTorch op and the ONNX Runtime op through roi_pool_rows.inc, the
// backward ones by the PyTorch op. Each loop item computes a bin's samples once and applies the
// per-bin math of csrc/kernels/deform_roi_pool.h to every channel with them. `par` is the
// framework's parallel loop: an object with `void run(int64_t begin, int64_t end, int64_t grain, F
// f) const`.
#pragma once

#include <vector>

#include "../kernels/deform_roi_pool.h"

namespace dcn {

// A bin's samples, computed once (the `samples` argument of the per-bin math).
template <typename A>
struct CachedBinSamples {
  std::vector<BilinearTaps<A>> taps;
  A n = A(1);

  void collect(const RoIBin<A>& bin, int height, int width) {
    taps.clear();
    BinSamples<A>{bin, height, width}([&](const BilinearTaps<A>& t) { taps.push_back(t); });
    n = roi_bin_count(bin);
  }
  template <typename F>
  void operator()(F&& f) const {
    for (const BilinearTaps<A>& t : taps) f(t);
  }
  A count() const { return n; }
};

// Calls fn(bin, samples, n, b) for every bin b = ph * pooled_w + pw of every RoI n, one
// (RoI, bin) per item, with the bin's samples computed once. rois [K, 5] (valid batch indices),
// offset [K, 2, ph, pw] or null.
template <typename A, typename Parallel, typename T, typename Fn>
void for_each_roi_bin(const Parallel& par, const RoIPoolShape& s, const T* rois, const T* offset,
                      int64_t k_rois, const Fn& fn) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w;
  par.run(0, k_rois * bins, 4, [&](int64_t lo, int64_t hi) {
    CachedBinSamples<A> samples;
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t n = i / bins, b = i % bins;
      const RoIBin<A> bin = roi_bin_at<A>(s, rois, offset, n, static_cast<int>(b / s.pooled_w),
                                          static_cast<int>(b % s.pooled_w));
      samples.collect(bin, s.height, s.width);
      fn(bin, samples, n, b);
    }
  });
}

// A bin's samples as a stencil: the distinct map pixels its taps read (index into one H x W
// plane) with the summed weight of every tap on each, already divided by the bin's sample count.
// The bin's pooled value on any channel is then sum_j w[j] * channel[idx[j]]: for a 2 x 2 grid
// in a bin under a pixel wide (small RoIs) 16 taps shrink to 4-9 reads per channel.
template <typename A>
struct BinStencil {
  std::vector<int> idx;
  std::vector<A> w;

  void collect(const RoIBin<A>& bin, int height, int width) {
    idx.clear();
    w.clear();
    const A inv = A(1) / roi_bin_count(bin);
    BinSamples<A>{bin, height, width}([&](const BilinearTaps<A>& t) {
      for (int i = 0; i < 4; ++i)
        if (t.w[i] != A(0)) add(t.idx[i], t.w[i] * inv);
    });
  }

 private:
  // Repeats sit close together (neighbouring samples, neighbouring corners): look back a few
  // entries only, so a huge adaptive grid stays linear (a missed repeat is just a second read).
  void add(int at, A weight) {
    const size_t n = idx.size(), stop = n > 8 ? n - 8 : 0;
    for (size_t j = n; j > stop; --j) {
      if (idx[j - 1] == at) {
        w[j - 1] += weight;
        return;
      }
    }
    idx.push_back(at);
    w.push_back(weight);
  }
};

// Position-sensitive pooling, out [K, out_channels, ph, pw] from input [N, C, H, W]: each bin
// reads its own channel, so the loop runs over planes, a bin's samples computed once for all of
// its channels. (Plain pooling vectorises over channels: csrc/cpu/roi_pool_rows.inc.)
template <typename A, typename Parallel, typename T>
void ps_roi_pool_forward_rows(const Parallel& par, const RoIPoolShape& s, const T* input,
                              const T* rois, const T* offset, int64_t k_rois, T* out) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w;
  for_each_roi_bin<A>(
      par, s, rois, offset, k_rois,
      [&](const RoIBin<A>&, const CachedBinSamples<A>& samples, int64_t n, int64_t b) {
        const int ph = static_cast<int>(b / s.pooled_w), pw = static_cast<int>(b % s.pooled_w);
        const T* first = input + roi_input_plane<A>(s, rois, n, 0, ph, pw);
        for (int c = 0; c < s.out_channels; ++c)
          out[(n * s.out_channels + c) * bins + b] =
              T(roi_bin_average<A>(first + c * s.channel_step(), samples));
      });
}

// grad_input [N, C, H, W] (accumulation type) += the spread of grad [K, out_channels, ph, pw].
// Threads own disjoint output channels, hence disjoint input channels: no two write the same
// element. Each thread computes a bin's samples once for all of its channels.
template <typename A, typename Parallel, typename T>
void roi_pool_backward_input_rows(const Parallel& par, const RoIPoolShape& s, const T* grad,
                                  const T* rois, const T* offset, int64_t k_rois, A* grad_input) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w;
  par.run(0, s.out_channels, 1, [&](int64_t lo, int64_t hi) {
    CachedBinSamples<A> samples;
    for (int64_t n = 0; n < k_rois; ++n) {
      for (int64_t b = 0; b < bins; ++b) {
        const int ph = static_cast<int>(b / s.pooled_w), pw = static_cast<int>(b % s.pooled_w);
        samples.collect(roi_bin_at<A>(s, rois, offset, n, ph, pw), s.height, s.width);
        if (samples.taps.empty()) continue;
        A* first = grad_input + roi_input_plane<A>(s, rois, n, 0, ph, pw);
        for (int64_t c = lo; c < hi; ++c) {
          const A g = A(grad[(n * s.out_channels + c) * bins + b]);
          if (g != A(0)) roi_bin_scatter(first + c * s.channel_step(), samples, g, PlainAdd());
        }
      }
    }
  });
}

// grad_offset [K, 2, ph, pw] from grad [K, out_channels, ph, pw].
template <typename A, typename Parallel, typename T>
void roi_pool_backward_offset_rows(const Parallel& par, const RoIPoolShape& s, const T* grad,
                                   const T* input, const T* rois, const T* offset, int64_t k_rois,
                                   T* grad_offset) {
  for_each_roi_bin<A>(
      par, s, rois, offset, k_rois,
      [&](const RoIBin<A>& bin, const CachedBinSamples<A>& samples, int64_t n, int64_t b) {
        roi_pool_offset_grad<A>(s, input, rois, grad, n, static_cast<int>(b / s.pooled_w),
                                static_cast<int>(b % s.pooled_w), bin, samples, grad_offset);
      });
}

}  // namespace dcn
