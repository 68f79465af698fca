// CUDA kernels of deformable convolution's columns, free of any framework: launched by the
// PyTorch op (csrc/torch) and the ONNX Runtime op (onnx_plugins). T is the storage type, A the
// accumulation type (float for float/half/bfloat16, double for double).
#pragma once

#include "../kernels/deform_im2col.h"
#include "launch.cuh"

namespace dcn {

// Entry e of the Q x K x C columns being processed: channel fastest, so neighbouring threads read
// neighbouring channels of one corner pixel (channels-last) and write neighbouring column entries.
struct ColumnEntry {
  int64_t q;
  int k, c;
};

__device__ ColumnEntry column_entry(const DeformConvShape& s, int64_t e) {
  ColumnEntry r;
  r.c = static_cast<int>(e % s.channels);
  const int64_t qk = e / s.channels;
  r.k = static_cast<int>(qk % s.kernel_size());
  r.q = qk / s.kernel_size();
  return r;
}

// The sampling point behind column entry e (of the columns starting at global position j0).
template <typename A>
struct ColumnPoint {
  ColumnEntry entry;
  OutputPosition position;
  BilinearTaps<A> taps;
  A mask;
};

template <typename A, typename T>
__device__ ColumnPoint<A> column_point(const DeformConvShape& s, const T* offset, const T* mask,
                                       int64_t j0, int64_t e) {
  ColumnPoint<A> cp;
  cp.entry = column_entry(s, e);
  cp.position = output_position(s, j0 + cp.entry.q);
  const int g = cp.entry.c / s.channels_per_offset_group(), k = cp.entry.k;
  cp.taps = deform_point_taps<A>(s, offset, cp.position, g, k / s.kernel_w, k % s.kernel_w);
  cp.mask = deform_point_mask<A>(s, mask, cp.position, g, k);
  return cp;
}

template <typename T, typename A>
__global__ void im2col_kernel(const T* image, const T* offset, const T* mask, DeformConvShape s,
                              int64_t j0, int64_t Q, T* col) {
  DCN_CUDA_KERNEL_LOOP(e, Q * s.column_width()) {
    const ColumnPoint<A> cp = column_point<A>(s, offset, mask, j0, e);
    const T* src = image + cp.position.n * s.plane_size() * s.channels + cp.entry.c;
    col[cp.entry.q * s.column_width() + s.column_index(cp.entry.k, cp.entry.c)] =
        T(cp.mask * bilinear_sample(src, cp.taps, s.channels));
  }
}

template <typename T, typename A>
__global__ void col2im_kernel(const T* grad_col, const T* offset, const T* mask, DeformConvShape s,
                              int64_t j0, int64_t Q, A* grad_image) {
  DCN_CUDA_KERNEL_LOOP(e, Q * s.column_width()) {
    const ColumnPoint<A> cp = column_point<A>(s, offset, mask, j0, e);
    const T* grad =
        grad_col + cp.entry.q * s.column_width() + s.column_index(cp.entry.k, cp.entry.c);
    bilinear_scatter(grad_image + cp.position.n * s.plane_size() * s.channels + cp.entry.c, cp.taps,
                     s.channels, grad, 1, cp.mask, AtomicAdd<A>());
  }
}

// One thread per (column, offset group, kernel point), summing over the group's channels.
template <typename T, typename A>
__global__ void coord_grad_kernel(const T* grad_col, const T* image, const T* offset, const T* mask,
                                  DeformConvShape s, int64_t j0, int64_t Q, T* grad_offset,
                                  T* grad_mask) {
  const int K = s.kernel_size(), cpo = s.channels_per_offset_group();
  DCN_CUDA_KERNEL_LOOP(e, Q * s.offset_groups * K) {
    const int k = static_cast<int>(e % K);
    const int g = static_cast<int>(e / K % s.offset_groups);
    const int64_t q = e / (int64_t(K) * s.offset_groups);
    const OutputPosition o = output_position(s, j0 + q);
    const BilinearTaps<A> t = deform_point_taps<A>(s, offset, o, g, k / s.kernel_w, k % s.kernel_w);
    const T* img = image + o.n * s.plane_size() * s.channels;
    const T* row = grad_col + q * s.column_width();
    A gy = A(0), gx = A(0), gm = A(0);
    for (int c = g * cpo; c < (g + 1) * cpo; ++c)
      accumulate_point_grad(img + c, s.channels, t, A(row[s.column_index(k, c)]), gy, gx, gm);
    store_point_grad(s, grad_offset, grad_mask, o, g, k, deform_point_mask<A>(s, mask, o, g, k), gy,
                     gx, gm);
  }
}

// Batched transpose dst [B, S, R] = src [B, R, S].
template <typename T>
__global__ void transpose_kernel(const T* src, int64_t B, int64_t R, int64_t S, T* dst) {
  DCN_CUDA_KERNEL_LOOP(i, B * R * S) {
    const int64_t r = i % R, c = i / R % S, b = i / (R * S);
    dst[i] = src[(b * R + r) * S + c];
  }
}

}  // namespace dcn
