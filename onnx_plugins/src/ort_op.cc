// Attribute parsing and shape checks of the dcn ONNX Runtime ops.
#include "ort_op.h"

namespace dcn::ort {

DeformConvAttributes::DeformConvAttributes(const OrtKernelInfo* raw) {
  const Ort::ConstKernelInfo info(raw);
  const std::string op = "DeformConv2d";
  kernel_shape = ints_attribute(info, "kernel_shape", {});
  const auto strides = ints_attribute(info, "strides", {1, 1});
  const auto pads = ints_attribute(info, "pads", {0, 0, 0, 0});
  const auto dilations = ints_attribute(info, "dilations", {1, 1});
  fail_if(!kernel_shape.empty() && kernel_shape.size() != 2, op, "kernel_shape must have 2 values");
  fail_if(strides.size() != 2, op, "strides must have 2 values");
  fail_if(pads.size() != 4, op, "pads must have 4 values (top, left, bottom, right)");
  fail_if(dilations.size() != 2, op, "dilations must have 2 values");
  params.stride_h = strides[0];
  params.stride_w = strides[1];
  params.pad_top = pads[0];
  params.pad_left = pads[1];
  params.pad_bottom = pads[2];
  params.pad_right = pads[3];
  params.dilation_h = dilations[0];
  params.dilation_w = dilations[1];
  params.groups = scalar_attribute<int64_t>(info, "group", 1);
  params.offset_groups = scalar_attribute<int64_t>(info, "offset_group", 1);
}

RoIPoolAttributes::RoIPoolAttributes(const OrtKernelInfo* raw, bool ps) : position_sensitive(ps) {
  const Ort::ConstKernelInfo info(raw);
  const std::string op = ps ? "PSDeformRoIPool" : "DeformRoIPool";
  const auto pooled = ints_attribute(info, "pooled_size", {});
  fail_if(pooled.size() != 1 && pooled.size() != 2, op, "pooled_size (1 or 2 ints) is required");
  pooled_h = pooled[0];
  pooled_w = pooled.back();
  output_dim = scalar_attribute<int64_t>(info, "output_dim", 0);
  spatial_scale = scalar_attribute<float>(info, "spatial_scale", 1.0f);
  sampling_ratio = scalar_attribute<int64_t>(info, "sampling_ratio", 2);
  gamma = scalar_attribute<float>(info, "gamma", 0.1f);
  aligned = scalar_attribute<int64_t>(info, "aligned", 1) != 0;
}

DeformConvShape checked_deform_conv_shape(const DeformConvAttributes& a, const Shape& x,
                                          const Shape& w, const Shape& offset, const Shape* bias,
                                          const Shape* mask) {
  const std::string op = "DeformConv2d";
  if (!a.kernel_shape.empty()) {
    fail_if(
        w.size() != 4 || w[2] != a.kernel_shape[0] || w[3] != a.kernel_shape[1], op,
        message("kernel_shape ", shape_str(a.kernel_shape), " does not match W ", shape_str(w)));
  }
  DeformConvShape s;
  check(op, check_deform_conv_shapes(x, w, offset, mask, bias, a.params, &s));
  return s;
}

DeformConvCall deform_conv_call(Ort::KernelContext& ctx, const DeformConvAttributes& a) {
  DeformConvCall call;
  call.x = ctx.GetInput(0);
  call.w = ctx.GetInput(1);
  call.offset = ctx.GetInput(2);
  call.bias = optional_input(ctx, 3);
  call.mask = optional_input(ctx, 4);
  const Shape bias_shape = call.bias ? shape_of(call.bias) : Shape();
  const Shape mask_shape = call.mask ? shape_of(call.mask) : Shape();
  const Shape w_shape = shape_of(call.w);
  call.shape = checked_deform_conv_shape(a, shape_of(call.x), w_shape, shape_of(call.offset),
                                         call.bias ? &bias_shape : nullptr,
                                         call.mask ? &mask_shape : nullptr);
  call.c_out = w_shape[0];
  const DeformConvShape& s = call.shape;
  call.y = ctx.GetOutput(0, {s.batch, call.c_out, s.out_h, s.out_w});
  return call;
}

RoIPoolCall roi_pool_call(const Ort::KernelContext& ctx, const RoIPoolAttributes& a) {
  RoIPoolCall call;
  call.x = ctx.GetInput(0);
  call.rois = ctx.GetInput(1);
  call.offset = optional_input(ctx, 2);
  call.x_shape = shape_of(call.x);
  call.rois_shape = shape_of(call.rois);
  const Shape offset_shape = call.offset ? shape_of(call.offset) : Shape();
  call.shape = checked_roi_pool_shape(a, call.x_shape, call.rois_shape,
                                      call.offset ? &offset_shape : nullptr);
  return call;
}

RoIPoolShape checked_roi_pool_shape(const RoIPoolAttributes& a, const Shape& x, const Shape& rois,
                                    const Shape* offset) {
  const std::string op = a.position_sensitive ? "PSDeformRoIPool" : "DeformRoIPool";
  RoIPoolShape s;
  check(op, check_roi_pool_shapes(x, rois, offset, a.pooled_h, a.pooled_w, a.spatial_scale,
                                  a.sampling_ratio, a.gamma, a.aligned, a.position_sensitive, &s));
  fail_if(a.output_dim > 0 && a.output_dim != s.out_channels, op,
          message("output_dim=", a.output_dim, " but the input gives ", s.out_channels,
                  " output channels"));
  return s;
}

}  // namespace dcn::ort
