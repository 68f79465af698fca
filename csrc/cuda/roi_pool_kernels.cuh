// CUDA kernels of (position-sensitive) deformable RoI pooling, free of any framework: launched by
// the PyTorch ops and the ONNX Runtime ops. T storage type, A accumulation type.
#pragma once

#include "../kernels/deform_roi_pool.h"
#include "launch.cuh"

namespace dcn {

// Output element i of [K, out_channels, ph, pw].
struct BinIndex {
  int64_t n;
  int c, ph, pw;
};

__device__ BinIndex bin_index(const RoIPoolShape& s, int64_t i) {
  BinIndex b;
  b.pw = static_cast<int>(i % s.pooled_w);
  b.ph = static_cast<int>(i / s.pooled_w % s.pooled_h);
  b.c = static_cast<int>(i / (int64_t(s.pooled_w) * s.pooled_h) % s.out_channels);
  b.n = i / (int64_t(s.pooled_w) * s.pooled_h * s.out_channels);
  return b;
}

template <typename T, typename A>
__global__ void roi_pool_forward_kernel(const T* input, const T* rois, const T* offset,
                                        RoIPoolShape s, int64_t count, T* out) {
  DCN_CUDA_KERNEL_LOOP(i, count) {
    const BinIndex b = bin_index(s, i);
    out[i] = T(roi_pool_output<A>(s, input, rois, offset, b.n, b.c, b.ph, b.pw));
  }
}

template <typename T, typename A>
__global__ void roi_pool_backward_input_kernel(const T* grad, const T* rois, const T* offset,
                                               RoIPoolShape s, int64_t count, A* grad_input) {
  DCN_CUDA_KERNEL_LOOP(i, count) {
    const BinIndex b = bin_index(s, i);
    roi_pool_scatter(s, grad_input, rois, offset, b.n, b.c, b.ph, b.pw, A(grad[i]), AtomicAdd<A>());
  }
}

// One thread per (RoI, bin), summing over output channels.
template <typename T, typename A>
__global__ void roi_pool_backward_offset_kernel(const T* grad, const T* input, const T* rois,
                                                const T* offset, RoIPoolShape s, int64_t count,
                                                T* grad_offset) {
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w;
  DCN_CUDA_KERNEL_LOOP(i, count) {
    const int64_t n = i / bins;
    const int ph = static_cast<int>(i % bins / s.pooled_w), pw = static_cast<int>(i % s.pooled_w);
    const RoIBin<A> bin = roi_bin_at<A>(s, rois, offset, n, ph, pw);
    roi_pool_offset_grad<A>(s, input, rois, grad, n, ph, pw, bin,
                            BinSamples<A>{bin, s.height, s.width}, grad_offset);
  }
}

}  // namespace dcn
