// CPU kernels for deformable RoI pooling: parallel loops over csrc/kernels/deform_roi_pool.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../cpu/roi_pool_loops.h"
#include "deform_roi_pool.h"

namespace dcn {
namespace {

template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// at::parallel_for as the RoI loop's parallel policy.
struct AtenParallel {
  template <typename F>
  void run(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    at::parallel_for(begin, end, grain, f);
  }
};

void forward_cpu(const at::Tensor& input, const at::Tensor& rois, const at::Tensor& offset,
                 const RoIPoolShape& s, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_fwd", [&] {
    roi_pool_forward_rows<at::opmath_type<scalar_t>>(
        AtenParallel(), s, input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
        data_or_null<scalar_t>(offset), rois.size(0), out.data_ptr<scalar_t>());
  });
}

void backward_input_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& offset,
                        const RoIPoolShape& s, at::Tensor& grad_input) {
  const int64_t k_rois = rois.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_bwd", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *g = grad.data_ptr<scalar_t>(), *r = rois.data_ptr<scalar_t>();
    const scalar_t* off = data_or_null<scalar_t>(offset);
    A* gin = grad_input.data_ptr<A>();
    // Output channel c only ever reads input channels no other output channel reads, so threads
    // owning disjoint output channels scatter without races.
    at::parallel_for(0, s.out_channels, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t n = 0; n < k_rois; ++n) {
        for (int c = static_cast<int>(lo); c < hi; ++c) {
          for (int ph = 0; ph < s.pooled_h; ++ph) {
            for (int pw = 0; pw < s.pooled_w; ++pw) {
              const A go = A(g[((n * s.out_channels + c) * s.pooled_h + ph) * s.pooled_w + pw]);
              roi_pool_scatter(s, gin, r, off, n, c, ph, pw, go, PlainAdd());
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
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_off", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *g = grad.data_ptr<scalar_t>(), *in = input.data_ptr<scalar_t>();
    const scalar_t *r = rois.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    scalar_t* goff = grad_offset.data_ptr<scalar_t>();
    at::parallel_for(0, rois.size(0) * bins, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        roi_pool_offset_grad<A>(s, in, r, off, g, i / bins, static_cast<int>(i % bins / s.pooled_w),
                                static_cast<int>(i % s.pooled_w), goff);
      }
    });
  });
}

const RoIPoolKernels kCpuKernels = {forward_cpu, backward_input_cpu, backward_offset_cpu};

DCN_DEFINE_ROI_POOL_ENTRY_POINTS(cpu, kCpuKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) { DCN_REGISTER_ROI_POOL_ENTRY_POINTS(cpu) }
