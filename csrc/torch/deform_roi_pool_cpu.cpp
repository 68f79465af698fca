// CPU kernels for deformable RoI pooling: parallel loops over csrc/kernels/deform_roi_pool.h; the
// forward's SIMD channel loops compiled per instruction set (deform_roi_pool_cpu_loops.inc).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../cpu/isa.h"
#include "../cpu/roi_pool_loops.h"
#include "deform_roi_pool_driver.h"
#include "tensor_args.h"

namespace dcn {
using RoIForward = void (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const RoIPoolShape&, at::Tensor&);
}  // namespace dcn

#define DCN_ISA_FILE "../torch/deform_roi_pool_cpu_loops.inc"
#include "../cpu/isa_variants.inc"

namespace dcn {
namespace {

void forward_cpu(const at::Tensor& input, const at::Tensor& rois, const at::Tensor& offset,
                 const RoIPoolShape& s, at::Tensor& out) {
  static const RoIForward best = DCN_PICK_ISA(kRoIForward);
  best(input, rois, offset, s, out);
}

void backward_input_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& offset,
                        const RoIPoolShape& s, at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_bwd", [&] {
    using A = at::opmath_type<scalar_t>;
    roi_pool_backward_input_rows<A>(AtenParallel(), s, grad.data_ptr<scalar_t>(),
                                    rois.data_ptr<scalar_t>(), data_or_null<scalar_t>(offset),
                                    rois.size(0), grad_input.data_ptr<A>());
  });
}

void backward_offset_cpu(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,
                         const at::Tensor& offset, const RoIPoolShape& s, at::Tensor& grad_offset) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_off", [&] {
    roi_pool_backward_offset_rows<at::opmath_type<scalar_t>>(
        AtenParallel(), s, grad.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
        rois.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), rois.size(0),
        grad_offset.data_ptr<scalar_t>());
  });
}

const RoIPoolKernels kCpuKernels = {forward_cpu, backward_input_cpu, backward_offset_cpu};

DCN_DEFINE_ROI_POOL_ENTRY_POINTS(cpu, kCpuKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) { DCN_REGISTER_ROI_POOL_ENTRY_POINTS(cpu) }
