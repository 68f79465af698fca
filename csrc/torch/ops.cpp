// Schemas of the dcn operator library. Kernels register per backend (CPU, CUDA, Autograd,
// Autocast) in their own files; shape functions for torch.export / torch.compile live in
// model/ops.py.
#include <torch/library.h>

#include <string>

#include "../cpu/isa.h"

TORCH_LIBRARY(dcn, m) {
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
  // Which CPU loop variant this process runs (DCN_CPU_ISA forces one; see csrc/cpu/isa.h).
  m.def("_cpu_isa() -> str", [] { return std::string(dcn::isa_name(dcn::selected_isa())); });
}
