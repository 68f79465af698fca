// Device-agnostic part of deformable RoI pooling: argument checks and the driver.
#include "deform_roi_pool.h"

#include <ATen/OpMathType.h>

#include <cmath>

#include "tensor_checks.h"

namespace dcn {
namespace {
constexpr int64_t kMaxSamplingRatio = 64;
}

RoIPoolShape check_roi_pool_args(const at::Tensor& input, const at::Tensor& rois,
                                 const std::optional<at::Tensor>& offset, int64_t pooled_h,
                                 int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                                 double gamma, bool position_sensitive) {
  const char* op = position_sensitive ? "ps_deform_roi_pool" : "deform_roi_pool";
  TORCH_CHECK(input.dim() == 4, op, ": input must be [N, C, H, W], got ",
              shape_str(input.sizes()));
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": input must be a floating-point tensor, got ", input.scalar_type());
  check_same_device_dtype(op, input, rois, "rois");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must be [K, 5] rows of (batch_index, x1, y1, x2, y2), got ",
              shape_str(rois.sizes()));
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, op, ": output size must be positive, got (",
              pooled_h, ", ", pooled_w, ")");
  TORCH_CHECK(std::isfinite(spatial_scale) && spatial_scale > 0, op,
              ": spatial_scale must be a positive number, got ", spatial_scale);
  TORCH_CHECK(std::isfinite(gamma), op, ": gamma must be finite, got ", gamma);
  TORCH_CHECK(sampling_ratio <= kMaxSamplingRatio, op, ": sampling_ratio must be at most ",
              kMaxSamplingRatio, " (<= 0 picks it per RoI), got ", sampling_ratio);
  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t k = rois.size(0);
  TORCH_CHECK(c > 0 && h > 0 && w > 0, op, ": input must have channels and pixels, got ",
              shape_str(input.sizes()));
  if (position_sensitive) {
    TORCH_CHECK(c % (pooled_h * pooled_w) == 0, op, ": input channels (", c,
                ") must be output_dim * pooled_h * pooled_w with pooled size ", pooled_h, "x",
                pooled_w);
  }
  if (offset) {
    check_same_device_dtype(op, input, *offset, "offset");
    const std::vector<int64_t> want = {k, 2, pooled_h, pooled_w};
    TORCH_CHECK(offset->sizes() == at::IntArrayRef(want), op,
                ": offset must be [K, 2, pooled_h, pooled_w] = ", shape_str(want), ", got ",
                shape_str(offset->sizes()));
  }
  if (k > 0) {
    // Reading a RoI's batch index must never leave the input: reject any that is not an integer
    // in [0, N). (One device sync on CUDA.)
    const at::Tensor index = rois.select(1, 0);
    const bool ok = at::logical_and(index.ge(0), index.lt(n))
                        .logical_and_(index.eq(index.floor()))
                        .all()
                        .item<bool>();
    TORCH_CHECK(ok, op, ": rois[:, 0] must hold integer batch indices in [0, ", n, ")");
  }
  RoIPoolShape s;
  s.channels = static_cast<int>(c);
  s.height = static_cast<int>(h);
  s.width = static_cast<int>(w);
  s.pooled_h = static_cast<int>(pooled_h);
  s.pooled_w = static_cast<int>(pooled_w);
  s.out_channels = static_cast<int>(position_sensitive ? c / (pooled_h * pooled_w) : c);
  s.sampling_ratio = static_cast<int>(std::max<int64_t>(sampling_ratio, 0));
  s.position_sensitive = position_sensitive;
  s.spatial_scale = spatial_scale;
  s.gamma = gamma;
  return s;
}

namespace {
at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t ? t->contiguous() : at::Tensor();
}
}  // namespace

at::Tensor roi_pool_forward(const RoIPoolKernels& kernels, const at::Tensor& input,
                            const at::Tensor& rois, const std::optional<at::Tensor>& offset,
                            int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                            int64_t sampling_ratio, double gamma, bool position_sensitive) {
  const RoIPoolShape s = check_roi_pool_args(input, rois, offset, pooled_h, pooled_w,
                                             spatial_scale, sampling_ratio, gamma,
                                             position_sensitive);
  at::Tensor out = at::empty({rois.size(0), s.out_channels, pooled_h, pooled_w}, input.options());
  if (out.numel() == 0) return out;
  kernels.forward(input.contiguous(), rois.contiguous(), contiguous_or_undefined(offset), s, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> roi_pool_backward(
    const RoIPoolKernels& kernels, const at::Tensor& grad, const at::Tensor& input,
    const at::Tensor& rois, const std::optional<at::Tensor>& offset, int64_t pooled_h,
    int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, double gamma,
    bool position_sensitive) {
  const RoIPoolShape s = check_roi_pool_args(input, rois, offset, pooled_h, pooled_w,
                                             spatial_scale, sampling_ratio, gamma,
                                             position_sensitive);
  const std::vector<int64_t> want = {rois.size(0), s.out_channels, pooled_h, pooled_w};
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(want), "deform_roi_pool backward: grad must be ",
              shape_str(want), ", got ", shape_str(grad.sizes()));
  check_same_device_dtype("deform_roi_pool backward", input, grad, "grad");
  const auto acc = input.options().dtype(at::toOpMathType(input.scalar_type()));
  at::Tensor grad_input = at::zeros(input.sizes(), acc);
  at::Tensor grad_offset = offset ? at::zeros_like(*offset) : at::empty({0}, input.options());
  if (grad.numel() > 0) {
    const at::Tensor g = grad.contiguous(), r = rois.contiguous();
    const at::Tensor off = contiguous_or_undefined(offset);
    kernels.backward_input(g, r, off, s, grad_input);
    if (offset) kernels.backward_offset(g, input.contiguous(), r, off, s, grad_offset);
  }
  return {grad_input.to(input.scalar_type()), grad_offset};
}

}  // namespace dcn
