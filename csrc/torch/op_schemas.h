// Schemas of the dcn ops, defined in ops.cpp for torch.ops.dcn and, for the CUDA kernels run on the
// CPU, in csrc/emulation/ops_cuda_on_cpu.cpp for torch.ops.dcn_cuda_on_cpu.
#pragma once

#include <torch/library.h>

namespace dcn {

inline void define_op_schemas(torch::Library& m) {
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor? mask, Tensor? bias, "
      "int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int groups, int offset_groups) -> Tensor");
  m.def(
      "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
      "Tensor? mask, Tensor? bias, int stride_h, int stride_w, int pad_h, int pad_w, "
      "int dilation_h, int dilation_w, int groups, int offset_groups) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "deform_roi_pool(Tensor input, Tensor rois, Tensor? offset, int pooled_height, "
      "int pooled_width, float spatial_scale, int sampling_ratio, float gamma, "
      "bool aligned=True) -> Tensor");
  m.def(
      "ps_deform_roi_pool(Tensor input, Tensor rois, Tensor? offset, int pooled_height, "
      "int pooled_width, float spatial_scale, int sampling_ratio, float gamma, "
      "bool aligned=True) -> Tensor");
  m.def(
      "_deform_roi_pool_backward(Tensor grad, Tensor input, Tensor rois, Tensor? offset, "
      "int pooled_height, int pooled_width, float spatial_scale, int sampling_ratio, "
      "float gamma, bool aligned, bool position_sensitive) -> (Tensor, Tensor)");
}

}  // namespace dcn
