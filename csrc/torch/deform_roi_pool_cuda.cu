// CUDA kernels for deformable RoI pooling: one thread per output bin (forward, input gradient)
// or per RoI bin (offset gradient), all calling csrc/kernels/deform_roi_pool.h. Also compiled
// for the CPU (torch_cuda.h, csrc/emulation), where tests run these very kernels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../cuda/roi_pool_kernels.cuh"
#include "deform_roi_pool_driver.h"
#include "tensor_args.h"
#include "torch_cuda.h"

namespace dcn {
namespace {

void forward_cuda(const at::Tensor& input, const at::Tensor& rois, const at::Tensor& offset,
                  const RoIPoolShape& s, at::Tensor& out) {
  const CudaDeviceGuard guard(input.device());
  const int64_t count = out.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_fwd", [&] {
    launch_kernel(roi_pool_forward_kernel<scalar_t, at::opmath_type<scalar_t>>, count,
                  current_stream(), input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                  data_or_null<scalar_t>(offset), s, count, out.data_ptr<scalar_t>());
  });
  check_launch();
}

void backward_input_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& offset,
                         const RoIPoolShape& s, at::Tensor& grad_input) {
  // Bins scatter into shared pixels with atomicAdd: the sum's order varies.
  at::globalContext().alertNotDeterministic("dcn::deform_roi_pool backward (CUDA)");
  const CudaDeviceGuard guard(grad.device());
  const int64_t count = grad.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_bwd", [&] {
    using A = at::opmath_type<scalar_t>;
    launch_kernel(roi_pool_backward_input_kernel<scalar_t, A>, count, current_stream(),
                  grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                  data_or_null<scalar_t>(offset), s, count, grad_input.data_ptr<A>());
  });
  check_launch();
}

void backward_offset_cuda(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,
                          const at::Tensor& offset, const RoIPoolShape& s,
                          at::Tensor& grad_offset) {
  const CudaDeviceGuard guard(grad.device());
  const int64_t count = rois.size(0) * s.pooled_h * s.pooled_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_off", [&] {
    launch_kernel(roi_pool_backward_offset_kernel<scalar_t, at::opmath_type<scalar_t>>, count,
                  current_stream(), grad.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
                  rois.data_ptr<scalar_t>(), data_or_null<scalar_t>(offset), s, count,
                  grad_offset.data_ptr<scalar_t>());
  });
  check_launch();
}

const RoIPoolKernels kCudaKernels = {forward_cuda, backward_input_cuda, backward_offset_cuda};

DCN_DEFINE_ROI_POOL_ENTRY_POINTS(cuda, kCudaKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(DCN_CUDA_OPS, DCN_CUDA_KEY, m) { DCN_REGISTER_ROI_POOL_ENTRY_POINTS(cuda) }
