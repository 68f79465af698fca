// Small helpers for the dcn ONNX Runtime custom ops: reading attributes once at kernel creation,
// turning exceptions into OrtStatus (never aborting the process), and tensor shapes.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <exception>
#include <string>
#include <vector>

#include "../../csrc/common/shape_checks.h"

namespace dcn::ort {

// Error raised by a kernel for bad input; becomes an ORT_INVALID_ARGUMENT status.
inline void fail_if(bool bad, const std::string& op, const std::string& what) {
  if (bad) throw Ort::Exception(op + ": " + what, ORT_INVALID_ARGUMENT);
}

inline void check(const std::string& op, const std::string& error) {
  fail_if(!error.empty(), op, error);
}

// Runs fn, returning any exception as an OrtStatus (the V2 kernel entry points' contract).
template <typename Fn>
OrtStatusPtr status_of(Fn&& fn) {
  try {
    fn();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

inline std::vector<int64_t> ints_attribute(const Ort::ConstKernelInfo& info, const char* name,
                                           std::vector<int64_t> fallback) {
  try {
    return info.GetAttributes<int64_t>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

template <typename T>
T scalar_attribute(const Ort::ConstKernelInfo& info, const char* name, T fallback) {
  try {
    return info.GetAttribute<T>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

inline Shape shape_of(const Ort::ConstValue& v) { return v.GetTensorTypeAndShapeInfo().GetShape(); }

// Optional input i: null when absent (past the end or given an empty name).
inline Ort::ConstValue optional_input(const Ort::KernelContext& ctx, size_t i) {
  if (i >= ctx.GetInputCount()) return Ort::ConstValue(nullptr);
  return ctx.GetInput(i);
}

// Attributes of DeformConv2d (as ONNX DeformConv) and of the RoI pooling ops.
struct DeformConvAttributes {
  explicit DeformConvAttributes(const OrtKernelInfo* info);
  std::vector<int64_t> kernel_shape;  // empty: taken from W
  DeformConvParams params;
};

struct RoIPoolAttributes {
  RoIPoolAttributes(const OrtKernelInfo* info, bool position_sensitive);
  int64_t output_dim, pooled_h, pooled_w, sampling_ratio;
  double spatial_scale, gamma;
  bool aligned, position_sensitive;
};

// One DeformConv2d call: its inputs (bias / mask null when absent), checked geometry, C_out and
// the allocated output Y [N, C_out, out_h, out_w]. Throws on bad input.
struct DeformConvCall {
  Ort::ConstValue x{nullptr}, w{nullptr}, offset{nullptr}, bias{nullptr}, mask{nullptr};
  DeformConvShape shape;
  int64_t c_out = 0;
  Ort::UnownedValue y{nullptr};
};
DeformConvCall deform_conv_call(Ort::KernelContext& ctx, const DeformConvAttributes& a);

// One RoI pooling call: its inputs (offset null when absent), their shapes and the checked
// geometry. Throws on bad shapes; the batch indices in rois are the binding's to check (they may
// live on the device). output_shape(): [K, out_channels, pooled_h, pooled_w].
struct RoIPoolCall {
  Ort::ConstValue x{nullptr}, rois{nullptr}, offset{nullptr};
  Shape x_shape, rois_shape;
  RoIPoolShape shape;
  Shape output_shape() const {
    return {rois_shape[0], shape.out_channels, shape.pooled_h, shape.pooled_w};
  }
};
RoIPoolCall roi_pool_call(const Ort::KernelContext& ctx, const RoIPoolAttributes& a);

// Shape checks of one call; throw on bad input.
DeformConvShape checked_deform_conv_shape(const DeformConvAttributes& a, const Shape& x,
                                          const Shape& w, const Shape& offset, const Shape* bias,
                                          const Shape* mask);
RoIPoolShape checked_roi_pool_shape(const RoIPoolAttributes& a, const Shape& x, const Shape& rois,
                                    const Shape* offset);

}  // namespace dcn::ort
