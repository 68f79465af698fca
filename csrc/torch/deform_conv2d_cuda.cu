// CUDA column kernels for deformable convolution: one thread per column entry (im2col, col2im)
// or per sampling point (offset/mask gradient), all calling csrc/kernels/deform_im2col.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "cuda_launch.cuh"
#include "deform_conv2d.h"

namespace dcn {
namespace {

template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

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

template <typename T>
__global__ void im2col_kernel(const T* image, const T* offset, const T* mask, DeformConvShape s,
                              int64_t j0, int64_t Q, T* col) {
  using A = at::opmath_type<T>;
  DCN_CUDA_KERNEL_LOOP(e, Q * s.column_width()) {
    const ColumnPoint<A> cp = column_point<A>(s, offset, mask, j0, e);
    const T* src = image + cp.position.n * s.plane_size() * s.channels + cp.entry.c;
    col[cp.entry.q * s.column_width() + s.column_index(cp.entry.k, cp.entry.c)] =
        T(cp.mask * bilinear_sample(src, cp.taps, s.channels));
  }
}

template <typename T, typename A>
__global__ void col2im_kernel(const T* grad_col, const T* offset, const T* mask,
                              DeformConvShape s, int64_t j0, int64_t Q, A* grad_image) {
  DCN_CUDA_KERNEL_LOOP(e, Q * s.column_width()) {
    const ColumnPoint<A> cp = column_point<A>(s, offset, mask, j0, e);
    const T* grad = grad_col + cp.entry.q * s.column_width() + s.column_index(cp.entry.k, cp.entry.c);
    bilinear_scatter(grad_image + cp.position.n * s.plane_size() * s.channels + cp.entry.c,
                     cp.taps, s.channels, grad, 1, cp.mask, AtomicAdd<A>());
  }
}

// One thread per (column, offset group, kernel point), summing over the group's channels.
template <typename T>
__global__ void coord_grad_kernel(const T* grad_col, const T* image, const T* offset,
                                  const T* mask, DeformConvShape s, int64_t j0, int64_t Q,
                                  T* grad_offset, T* grad_mask) {
  using A = at::opmath_type<T>;
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
    store_point_grad(s, grad_offset, grad_mask, o, g, k, deform_point_mask<A>(s, mask, o, g, k),
                     gy, gx, gm);
  }
}

void im2col_cuda(const at::Tensor& image, const at::Tensor& offset, const at::Tensor& mask,
                 const DeformConvShape& s, int64_t j0, at::Tensor& col) {
  const c10::cuda::CUDAGuard guard(image.device());
  const int64_t Q = col.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "im2col", [&] {
    im2col_kernel<scalar_t><<<cuda_blocks(Q * s.column_width()), kCudaThreads, 0,
                              at::cuda::getCurrentCUDAStream()>>>(
        image.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask), s,
        j0, Q, col.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void col2im_cuda(const at::Tensor& grad_col, const at::Tensor& offset, const at::Tensor& mask,
                 const DeformConvShape& s, int64_t j0, at::Tensor& grad_image) {
  const c10::cuda::CUDAGuard guard(grad_col.device());
  const int64_t Q = grad_col.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_col.scalar_type(), "col2im", [&] {
    using A = at::opmath_type<scalar_t>;
    col2im_kernel<scalar_t, A><<<cuda_blocks(Q * s.column_width()), kCudaThreads, 0,
                                 at::cuda::getCurrentCUDAStream()>>>(
        grad_col.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), data_or_null<scalar_t>(mask),
        s, j0, Q, grad_image.data_ptr<A>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void coord_grad_cuda(const at::Tensor& grad_col, const at::Tensor& image,
                     const at::Tensor& offset, const at::Tensor& mask, const DeformConvShape& s,
                     int64_t j0, at::Tensor& grad_offset, at::Tensor& grad_mask) {
  const c10::cuda::CUDAGuard guard(image.device());
  const int64_t Q = grad_col.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "coord_grad", [&] {
    coord_grad_kernel<scalar_t><<<cuda_blocks(Q * s.offset_groups * s.kernel_size()),
                                  kCudaThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        grad_col.data_ptr<scalar_t>(), image.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
        data_or_null<scalar_t>(mask), s, j0, Q, grad_offset.data_ptr<scalar_t>(),
        data_or_null<scalar_t>(grad_mask));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor transpose_cuda(const at::Tensor& src) { return src.transpose(1, 2).contiguous(); }

const DeformColumnKernels kCudaKernels = {im2col_cuda, col2im_cuda, coord_grad_cuda,
                                          transpose_cuda};

DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(cuda, kCudaKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CUDA, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_cuda);
  m.impl("_deform_conv2d_backward", &dcn::deform_conv2d_backward_cuda);
}
