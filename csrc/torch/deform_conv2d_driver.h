// Deformable convolution v1/v2 for PyTorch: the device-agnostic im2col + GEMM driver, and the
// column kernels each backend supplies to it.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "../kernels/deform_im2col.h"

namespace dcn {

// Column kernels of one backend (layouts: csrc/kernels/deform_im2col.h). Tensors are contiguous:
// input [N, H, W, C] (channels-last); offset [N, 2*G*K, out_h, out_w]; mask [N, G*K, out_h, out_w]
// or undefined; col / grad_col [Q, C*K] for global output positions j0 .. j0 + Q - 1.
struct DeformColumnKernels {
  // col = mask * bilinear(input) at every sampling point.
  void (*im2col)(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                 const DeformConvShape& s, int64_t j0, at::Tensor& col);
  // grad_input [N, H, W, C] (accumulation dtype) += scatter of grad_col.
  void (*col2im)(const at::Tensor& grad_col, const at::Tensor& offset, const at::Tensor& mask,
                 const DeformConvShape& s, int64_t j0, at::Tensor& grad_input);
  // Writes grad_offset [N, 2*G*K, out_h, out_w] and grad_mask (if defined) at the Q positions.
  void (*coord_grad)(const at::Tensor& grad_col, const at::Tensor& input, const at::Tensor& offset,
                     const at::Tensor& mask, const DeformConvShape& s, int64_t j0,
                     at::Tensor& grad_offset, at::Tensor& grad_mask);
  // Batched transpose: returns [B, S, R] from src [B, R, S] (dtype kept), contiguous.
  at::Tensor (*transpose)(const at::Tensor& src);
};

// Validates every argument (shapes, dtypes, devices, hyper-parameters) and returns the geometry.
DeformConvShape check_deform_conv2d_args(const at::Tensor& input, const at::Tensor& weight,
                                         const at::Tensor& offset,
                                         const std::optional<at::Tensor>& mask,
                                         const std::optional<at::Tensor>& bias, int64_t stride_h,
                                         int64_t stride_w, int64_t pad_h, int64_t pad_w,
                                         int64_t dilation_h, int64_t dilation_w, int64_t groups,
                                         int64_t offset_groups);

at::Tensor deform_conv2d_forward(const DeformColumnKernels& kernels, const at::Tensor& input,
                                 const at::Tensor& weight, const at::Tensor& offset,
                                 const std::optional<at::Tensor>& mask,
                                 const std::optional<at::Tensor>& bias, int64_t stride_h,
                                 int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                                 int64_t dilation_w, int64_t groups, int64_t offset_groups);

// Returns (grad_input, grad_weight, grad_offset, grad_mask, grad_bias); grad_mask / grad_bias are
// empty tensors when there is no mask / bias.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward(
    const DeformColumnKernels& kernels, const at::Tensor& grad_out, const at::Tensor& input,
    const at::Tensor& weight, const at::Tensor& offset, const std::optional<at::Tensor>& mask,
    const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w, int64_t pad_h,
    int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t groups, int64_t offset_groups);

}  // namespace dcn

// Declares the two entry points of backend `NAME` that bind `KERNELS` to the driver, with the
// op signatures, ready for TORCH_LIBRARY_IMPL.
#define DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(NAME, KERNELS)                                       \
  at::Tensor deform_conv2d_##NAME(const at::Tensor& input, const at::Tensor& weight,               \
                                  const at::Tensor& offset, const std::optional<at::Tensor>& mask, \
                                  const std::optional<at::Tensor>& bias, int64_t sh, int64_t sw,   \
                                  int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups,  \
                                  int64_t offset_groups) {                                         \
    return dcn::deform_conv2d_forward(KERNELS, input, weight, offset, mask, bias, sh, sw, ph, pw,  \
                                      dh, dw, groups, offset_groups);                              \
  }                                                                                                \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>                           \
      deform_conv2d_backward_##NAME(                                                               \
          const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight,               \
          const at::Tensor& offset, const std::optional<at::Tensor>& mask,                         \
          const std::optional<at::Tensor>& bias, int64_t sh, int64_t sw, int64_t ph, int64_t pw,   \
          int64_t dh, int64_t dw, int64_t groups, int64_t offset_groups) {                         \
    return dcn::deform_conv2d_backward(KERNELS, grad, input, weight, offset, mask, bias, sh, sw,   \
                                       ph, pw, dh, dw, groups, offset_groups);                     \
  }
