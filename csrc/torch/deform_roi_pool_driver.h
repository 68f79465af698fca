// Deformable RoI pooling (plain and position-sensitive) for PyTorch: argument checks, the
// device-agnostic driver, and the kernels each backend supplies to it.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "../kernels/deform_roi_pool.h"

namespace dcn {

// Kernels of one backend. input [N, C, H, W], rois [K, 5], offset [K, 2, ph, pw] or undefined,
// grad / out [K, out_channels, ph, pw]; all contiguous, rois' batch indices already validated.
struct RoIPoolKernels {
  void (*forward)(const at::Tensor& input, const at::Tensor& rois, const at::Tensor& offset,
                  const RoIPoolShape& s, at::Tensor& out);
  // grad_input: zero-initialised, accumulation dtype.
  void (*backward_input)(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& offset,
                         const RoIPoolShape& s, at::Tensor& grad_input);
  // grad_offset: [K, 2, ph, pw], every entry written.
  void (*backward_offset)(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,
                          const at::Tensor& offset, const RoIPoolShape& s, at::Tensor& grad_offset);
};

RoIPoolShape check_roi_pool_args(const at::Tensor& input, const at::Tensor& rois,
                                 const std::optional<at::Tensor>& offset, int64_t pooled_h,
                                 int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                                 double gamma, bool aligned, bool position_sensitive);

at::Tensor roi_pool_forward(const RoIPoolKernels& kernels, const at::Tensor& input,
                            const at::Tensor& rois, const std::optional<at::Tensor>& offset,
                            int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                            int64_t sampling_ratio, double gamma, bool aligned,
                            bool position_sensitive);

// Returns (grad_input, grad_offset); grad_offset is empty without an offset.
std::tuple<at::Tensor, at::Tensor> roi_pool_backward(
    const RoIPoolKernels& kernels, const at::Tensor& grad, const at::Tensor& input,
    const at::Tensor& rois, const std::optional<at::Tensor>& offset, int64_t pooled_h,
    int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, double gamma, bool aligned,
    bool position_sensitive);

}  // namespace dcn

// Defines backend NAME's entry points for the three RoI pooling ops, bound to KERNELS.
#define DCN_DEFINE_ROI_POOL_ENTRY_POINTS(NAME, KERNELS)                                           \
  at::Tensor deform_roi_pool_##NAME(                                                              \
      const at::Tensor& input, const at::Tensor& rois, const std::optional<at::Tensor>& offset,   \
      int64_t ph, int64_t pw, double scale, int64_t sr, double gamma, bool aligned) {             \
    return dcn::roi_pool_forward(KERNELS, input, rois, offset, ph, pw, scale, sr, gamma, aligned, \
                                 false);                                                          \
  }                                                                                               \
  at::Tensor ps_deform_roi_pool_##NAME(                                                           \
      const at::Tensor& input, const at::Tensor& rois, const std::optional<at::Tensor>& offset,   \
      int64_t ph, int64_t pw, double scale, int64_t sr, double gamma, bool aligned) {             \
    return dcn::roi_pool_forward(KERNELS, input, rois, offset, ph, pw, scale, sr, gamma, aligned, \
                                 true);                                                           \
  }                                                                                               \
  std::tuple<at::Tensor, at::Tensor> deform_roi_pool_backward_##NAME(                             \
      const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,                    \
      const std::optional<at::Tensor>& offset, int64_t ph, int64_t pw, double scale, int64_t sr,  \
      double gamma, bool aligned, bool position_sensitive) {                                      \
    return dcn::roi_pool_backward(KERNELS, grad, input, rois, offset, ph, pw, scale, sr, gamma,   \
                                  aligned, position_sensitive);                                   \
  }

#define DCN_REGISTER_ROI_POOL_ENTRY_POINTS(NAME)                 \
  m.impl("deform_roi_pool", &dcn::deform_roi_pool_##NAME);       \
  m.impl("ps_deform_roi_pool", &dcn::ps_deform_roi_pool_##NAME); \
  m.impl("_deform_roi_pool_backward", &dcn::deform_roi_pool_backward_##NAME);
