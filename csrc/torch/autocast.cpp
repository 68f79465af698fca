// Autocast for the dcn ops (torch.autocast on CPU and CUDA). As torchvision does for its ops,
// every floating-point tensor argument is cast to float32 before dispatch, so an fp16 / bf16
// activation may meet fp32 weights (and the other way round); the result comes back in the
// input's dtype. Casts are differentiable, so gradients reach each tensor in its own dtype.
// Float64 tensors are left alone (autocast never casts them).
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "op_handles.h"

namespace dcn {
namespace {

template <c10::DeviceType Device>
at::Tensor to_float(const at::Tensor& t) {
  return at::autocast::cached_cast(at::kFloat, t, Device);
}

template <c10::DeviceType Device>
std::optional<at::Tensor> to_float(const std::optional<at::Tensor>& t) {
  return at::autocast::cached_cast(at::kFloat, t, Device);
}

template <c10::DispatchKey Key, c10::DeviceType Device>
at::Tensor deform_conv2d_autocast(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& offset, const std::optional<at::Tensor>& mask,
                                  const std::optional<at::Tensor>& bias, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups,
                                  int64_t offset_groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(Key);
  static auto op = typed_op<DeformConvFn>("dcn::deform_conv2d");
  return op
      .call(to_float<Device>(input), to_float<Device>(weight), to_float<Device>(offset),
            to_float<Device>(mask), to_float<Device>(bias), sh, sw, ph, pw, dh, dw, groups,
            offset_groups)
      .to(input.scalar_type());
}

template <c10::DispatchKey Key, c10::DeviceType Device, bool PositionSensitive>
at::Tensor deform_roi_pool_autocast(const at::Tensor& input, const at::Tensor& rois,
                                    const std::optional<at::Tensor>& offset, int64_t pooled_h,
                                    int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                                    double gamma, bool aligned) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(Key);
  static auto op =
      typed_op<RoIPoolFn>(PositionSensitive ? "dcn::ps_deform_roi_pool" : "dcn::deform_roi_pool");
  return op
      .call(to_float<Device>(input), to_float<Device>(rois), to_float<Device>(offset), pooled_h,
            pooled_w, spatial_scale, sampling_ratio, gamma, aligned)
      .to(input.scalar_type());
}

}  // namespace
}  // namespace dcn

#define DCN_REGISTER_AUTOCAST(KEY, DEVICE)                                                         \
  TORCH_LIBRARY_IMPL(dcn, KEY, m) {                                                                \
    m.impl("deform_conv2d",                                                                        \
           &dcn::deform_conv2d_autocast<c10::DispatchKey::KEY, c10::DeviceType::DEVICE>);          \
    m.impl("deform_roi_pool",                                                                      \
           &dcn::deform_roi_pool_autocast<c10::DispatchKey::KEY, c10::DeviceType::DEVICE, false>); \
    m.impl("ps_deform_roi_pool",                                                                   \
           &dcn::deform_roi_pool_autocast<c10::DispatchKey::KEY, c10::DeviceType::DEVICE, true>);  \
  }

DCN_REGISTER_AUTOCAST(AutocastCPU, CPU)
DCN_REGISTER_AUTOCAST(AutocastCUDA, CUDA)
