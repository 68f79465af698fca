// CPU kernels for deformable RoI pooling: parallel loops over csrc/kernels/deform_roi_pool.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "deform_roi_pool.h"

namespace dcn {
namespace {

// Pointer to RoI n's [2, ph, pw] offsets, or null without offsets.
template <typename T>
const T* roi_offset(const at::Tensor& offset, const RoIPoolShape& s, int64_t n) {
  return offset.defined() ? offset.data_ptr<T>() + n * 2 * s.pooled_h * s.pooled_w : nullptr;
}

void forward_cpu(const at::Tensor& input, const at::Tensor& rois, const at::Tensor& offset,
                 const RoIPoolShape& s, at::Tensor& out) {
  const int64_t plane = int64_t(s.height) * s.width, bins = int64_t(s.pooled_h) * s.pooled_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_fwd", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *in = input.data_ptr<scalar_t>(), *r = rois.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, out.numel(), 64, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t n = i / (s.out_channels * bins);
        const int c = static_cast<int>(i / bins % s.out_channels);
        const int ph = static_cast<int>(i % bins / s.pooled_w), pw = static_cast<int>(i % s.pooled_w);
        const scalar_t* roi = r + n * 5;
        const RoIBin<A> bin = roi_bin<A>(s, roi, roi_offset<scalar_t>(offset, s, n), ph, pw);
        const int64_t batch = static_cast<int64_t>(roi[0]);
        const scalar_t* im = in + (batch * s.channels + s.input_channel(c, ph, pw)) * plane;
        o[i] = scalar_t(roi_bin_average(im, s.height, s.width, bin));
      }
    });
  });
}

void backward_input_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& offset,
                        const RoIPoolShape& s, at::Tensor& grad_input) {
  const int64_t plane = int64_t(s.height) * s.width, k_rois = rois.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_bwd", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *g = grad.data_ptr<scalar_t>(), *r = rois.data_ptr<scalar_t>();
    A* gin = grad_input.data_ptr<A>();
    // Output channel c only ever reads input channels no other output channel reads, so threads
    // owning disjoint output channels scatter without races.
    at::parallel_for(0, s.out_channels, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t n = 0; n < k_rois; ++n) {
        const scalar_t* roi = r + n * 5;
        const int64_t batch = static_cast<int64_t>(roi[0]);
        for (int c = static_cast<int>(lo); c < hi; ++c) {
          for (int ph = 0; ph < s.pooled_h; ++ph) {
            for (int pw = 0; pw < s.pooled_w; ++pw) {
              const RoIBin<A> bin = roi_bin<A>(s, roi, roi_offset<scalar_t>(offset, s, n), ph, pw);
              A* gplane = gin + (batch * s.channels + s.input_channel(c, ph, pw)) * plane;
              const A go = A(g[((n * s.out_channels + c) * s.pooled_h + ph) * s.pooled_w + pw]);
              roi_bin_scatter(gplane, s.height, s.width, bin, go, PlainAdd());
            }
          }
        }
      }
    });
  });
}

void backward_offset_cpu(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,
                         const at::Tensor& offset, const RoIPoolShape& s,
                         at::Tensor& grad_offset) {
  const int64_t plane = int64_t(s.height) * s.width, bins = int64_t(s.pooled_h) * s.pooled_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_off", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *g = grad.data_ptr<scalar_t>(), *in = input.data_ptr<scalar_t>();
    const scalar_t* r = rois.data_ptr<scalar_t>();
    scalar_t* goff = grad_offset.data_ptr<scalar_t>();
    at::parallel_for(0, rois.size(0) * bins, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t n = i / bins;
        const int ph = static_cast<int>(i % bins / s.pooled_w), pw = static_cast<int>(i % s.pooled_w);
        const scalar_t* roi = r + n * 5;
        const RoIBin<A> bin = roi_bin<A>(s, roi, roi_offset<scalar_t>(offset, s, n), ph, pw);
        const int64_t batch = static_cast<int64_t>(roi[0]);
        A sum_dx = A(0), sum_dy = A(0);
        for (int c = 0; c < s.out_channels; ++c) {
          const A go = A(g[(n * s.out_channels + c) * bins + ph * s.pooled_w + pw]);
          if (go == A(0)) continue;
          const scalar_t* im = in + (batch * s.channels + s.input_channel(c, ph, pw)) * plane;
          A dx, dy;
          roi_bin_offset_grad(im, s.height, s.width, bin, dx, dy);
          sum_dx += go * dx;
          sum_dy += go * dy;
        }
        goff[n * 2 * bins + ph * s.pooled_w + pw] = scalar_t(sum_dx);
        goff[(n * 2 + 1) * bins + ph * s.pooled_w + pw] = scalar_t(sum_dy);
      }
    });
  });
}

const RoIPoolKernels kCpuKernels = {forward_cpu, backward_input_cpu, backward_offset_cpu};

DCN_DEFINE_ROI_POOL_ENTRY_POINTS(cpu, kCpuKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) { DCN_REGISTER_ROI_POOL_ENTRY_POINTS(cpu) }
