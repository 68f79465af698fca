// CUDA execution-provider kernels of the dcn ONNX Runtime ops (float32 and float16, inference), in
// the CUDA-enabled build of the library (libdcn_ort_cuda.so).
#pragma once

#include "ort_op.h"

namespace dcn::ort {

#ifdef DCN_CUDA_ON_CPU
// The CPU emulation of these kernels (csrc/emulation) reads and writes host memory.
inline constexpr const char* kCudaProvider = "CPUExecutionProvider";
#else
inline constexpr const char* kCudaProvider = "CUDAExecutionProvider";
#endif

// T: float or Ort::Float16_t (computed in float32, stored in half).
template <typename T>
struct DeformConv2dCuda {
  static constexpr const char* kName = "DeformConv2d";
  static constexpr const char* kProvider = kCudaProvider;
  static constexpr ONNXTensorElementDataType kType = Ort::TypeToTensorType<T>::type;
  static constexpr size_t kInputs = 5, kRequiredInputs = 3;  // X, W, offset, [B], [mask]
  explicit DeformConv2dCuda(const OrtKernelInfo* info) : attributes(info) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
  DeformConvAttributes attributes;
};

template <typename T, bool PositionSensitive>
struct DeformRoIPoolCuda {
  static constexpr const char* kName = PositionSensitive ? "PSDeformRoIPool" : "DeformRoIPool";
  static constexpr const char* kProvider = kCudaProvider;
  static constexpr ONNXTensorElementDataType kType = Ort::TypeToTensorType<T>::type;
  static constexpr size_t kInputs = 3, kRequiredInputs = 2;  // X, rois, [offset]
  explicit DeformRoIPoolCuda(const OrtKernelInfo* info) : attributes(info, PositionSensitive) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context);
  RoIPoolAttributes attributes;
};

}  // namespace dcn::ort
