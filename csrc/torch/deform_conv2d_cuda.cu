// CUDA column kernels for deformable convolution: one thread per column entry (im2col, col2im)
// or per sampling point (offset/mask gradient), all calling csrc/kernels/deform_im2col.h. Also
// compiled for the CPU (torch_cuda.h, csrc/emulation), where tests run these very kernels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../cuda/column_kernels.cuh"
#include "deform_conv2d_driver.h"
#include "tensor_args.h"
#include "torch_cuda.h"

namespace dcn {
namespace {

void im2col_cuda(const at::Tensor& image, const at::Tensor& offset, const at::Tensor& mask,
                 const DeformConvShape& s, int64_t j0, at::Tensor& col) {
  const CudaDeviceGuard guard(image.device());
  const int64_t Q = col.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "im2col", [&] {
    launch_kernel(im2col_kernel<scalar_t, at::opmath_type<scalar_t>>, Q * s.column_width(),
                  current_stream(), image.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
                  data_or_null<scalar_t>(mask), s, j0, Q, col.data_ptr<scalar_t>());
  });
  check_launch();
}

void col2im_cuda(const at::Tensor& grad_col, const at::Tensor& offset, const at::Tensor& mask,
                 const DeformConvShape& s, int64_t j0, at::Tensor& grad_image) {
  // Sampling points scatter into shared pixels with atomicAdd: the sum's order varies.
  at::globalContext().alertNotDeterministic("dcn::deform_conv2d backward (CUDA)");
  const CudaDeviceGuard guard(grad_col.device());
  const int64_t Q = grad_col.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_col.scalar_type(), "col2im", [&] {
    using A = at::opmath_type<scalar_t>;
    launch_kernel(col2im_kernel<scalar_t, A>, Q * s.column_width(), current_stream(),
                  grad_col.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
                  data_or_null<scalar_t>(mask), s, j0, Q, grad_image.data_ptr<A>());
  });
  check_launch();
}

void coord_grad_cuda(const at::Tensor& grad_col, const at::Tensor& image, const at::Tensor& offset,
                     const at::Tensor& mask, const DeformConvShape& s, int64_t j0,
                     at::Tensor& grad_offset, at::Tensor& grad_mask) {
  const CudaDeviceGuard guard(image.device());
  const int64_t Q = grad_col.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "coord_grad", [&] {
    launch_kernel(coord_grad_kernel<scalar_t, at::opmath_type<scalar_t>>,
                  Q * s.offset_groups * s.kernel_size(), current_stream(),
                  grad_col.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(),
                  offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask), s, j0, Q,
                  grad_offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(grad_mask));
  });
  check_launch();
}

at::Tensor transpose_cuda(const at::Tensor& src) { return src.transpose(1, 2).contiguous(); }

const DeformColumnKernels kCudaKernels = {im2col_cuda, col2im_cuda, coord_grad_cuda,
                                          transpose_cuda};

DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(cuda, kCudaKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(DCN_CUDA_OPS, DCN_CUDA_KEY, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_cuda);
  m.impl("_deform_conv2d_backward", &dcn::deform_conv2d_backward_cuda);
}
