// CPU execution-provider kernels of the dcn ONNX Runtime ops (float32, inference).
#pragma once

#include "ort_op.h"

namespace dcn::ort {

struct DeformConv2dCpu {
  static constexpr const char* kName = "DeformConv2d";
  static constexpr const char* kProvider = "CPUExecutionProvider";
  static constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  static constexpr size_t kInputs = 5, kRequiredInputs = 3;  // X, W, offset, [B], [mask]
  explicit DeformConv2dCpu(const OrtKernelInfo* info);
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
  DeformConvAttributes attributes;
  // ONNX Runtime's own Gemm (MLAS, on the session's thread pool), with and without the bias
  // input C: Y = W_g x col_g^T (+ b).
  Ort::Op gemm{nullptr}, gemm_bias{nullptr};
};

template <bool PositionSensitive>
struct DeformRoIPoolCpu {
  static constexpr const char* kName = PositionSensitive ? "PSDeformRoIPool" : "DeformRoIPool";
  static constexpr const char* kProvider = "CPUExecutionProvider";
  static constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  static constexpr size_t kInputs = 3, kRequiredInputs = 2;  // X, rois, [offset]
  explicit DeformRoIPoolCpu(const OrtKernelInfo* info) : attributes(info, PositionSensitive) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
  RoIPoolAttributes attributes;
};

}  // namespace dcn::ort
