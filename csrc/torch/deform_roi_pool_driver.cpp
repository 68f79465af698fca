// Device-agnostic part of deformable RoI pooling: argument checks and the driver.
#include "deform_roi_pool_driver.h"

#include <ATen/OpMathType.h>

#include <cmath>

#include "../common/shape_checks.h"
#include "tensor_args.h"

namespace dcn {
RoIPoolShape check_roi_pool_args(const at::Tensor& input, const at::Tensor& rois,
                                 const std::optional<at::Tensor>& offset, int64_t pooled_h,
                                 int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                                 double gamma, bool aligned, bool position_sensitive) {
  const char* op = position_sensitive ? "ps_deform_roi_pool" : "deform_roi_pool";
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": input must be a floating-point tensor, got ", input.scalar_type());
  check_same_device_dtype(op, input, rois, "rois");
  if (offset) check_same_device_dtype(op, input, *offset, "offset");
  const Shape offset_shape = offset ? offset->sizes().vec() : Shape();
  RoIPoolShape s;
  const std::string error = check_roi_pool_shapes(
      input.sizes().vec(), rois.sizes().vec(), offset ? &offset_shape : nullptr, pooled_h, pooled_w,
      spatial_scale, sampling_ratio, gamma, aligned, position_sensitive, &s);
  TORCH_CHECK(error.empty(), op, ": ", error);
  if (rois.size(0) > 0) {
    // Reading a RoI's batch index must never leave the input: reject any that is not an integer
    // in [0, N). (Checked on the device: one sync on CUDA.)
    const at::Tensor index = rois.select(1, 0);
    const bool ok = at::logical_and(index.ge(0), index.lt(input.size(0)))
                        .logical_and_(index.eq(index.floor()))
                        .all()
                        .item<bool>();
    TORCH_CHECK(ok, op, ": rois[:, 0] must hold integer batch indices in [0, ", input.size(0), ")");
  }
  return s;
}

at::Tensor roi_pool_forward(const RoIPoolKernels& kernels, const at::Tensor& input,
                            const at::Tensor& rois, const std::optional<at::Tensor>& offset,
                            int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                            int64_t sampling_ratio, double gamma, bool aligned,
                            bool position_sensitive) {
  const RoIPoolShape s = check_roi_pool_args(input, rois, offset, pooled_h, pooled_w, spatial_scale,
                                             sampling_ratio, gamma, aligned, position_sensitive);
  at::Tensor out = at::empty({rois.size(0), s.out_channels, pooled_h, pooled_w}, input.options());
  if (out.numel() == 0) return out;
  kernels.forward(input.contiguous(), rois.contiguous(), contiguous_or_undefined(offset), s, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> roi_pool_backward(
    const RoIPoolKernels& kernels, const at::Tensor& grad, const at::Tensor& input,
    const at::Tensor& rois, const std::optional<at::Tensor>& offset, int64_t pooled_h,
    int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, double gamma, bool aligned,
    bool position_sensitive) {
  const RoIPoolShape s = check_roi_pool_args(input, rois, offset, pooled_h, pooled_w, spatial_scale,
                                             sampling_ratio, gamma, aligned, position_sensitive);
  const std::vector<int64_t> want = {rois.size(0), s.out_channels, pooled_h, pooled_w};
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(want), "deform_roi_pool backward: grad must be ",
              shape_str(want), ", got ", shape_str(grad.sizes()));
  check_same_device_dtype("deform_roi_pool backward", input, grad, "grad");
  const auto acc = input.options().dtype(at::toOpMathType(input.scalar_type()));
  at::Tensor grad_input = at::zeros(input.sizes(), acc);
  // The kernels write the offset gradient densely, so it must be contiguous even when the offset
  // is not (zeros_like would keep a permuted offset's strides).
  at::Tensor grad_offset =
      offset ? at::zeros(offset->sizes(), offset->options()) : at::empty({0}, input.options());
  if (grad.numel() > 0) {
    const at::Tensor g = grad.contiguous(), r = rois.contiguous();
    const at::Tensor off = contiguous_or_undefined(offset);
    kernels.backward_input(g, r, off, s, grad_input);
    if (offset) kernels.backward_offset(g, input.contiguous(), r, off, s, grad_offset);
  }
  return {grad_input.to(input.scalar_type()), grad_offset};
}

}  // namespace dcn
