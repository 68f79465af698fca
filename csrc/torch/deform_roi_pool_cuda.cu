// CUDA kernels for deformable RoI pooling: one thread per output bin (forward, input gradient)
// or per RoI bin (offset gradient), all calling csrc/kernels/deform_roi_pool.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "cuda_launch.cuh"
#include "deform_roi_pool.h"

namespace dcn {
namespace {

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

template <typename T>
__global__ void forward_kernel(const T* input, const T* rois, const T* offset, RoIPoolShape s,
                               int64_t count, T* out) {
  using A = at::opmath_type<T>;
  DCN_CUDA_KERNEL_LOOP(i, count) {
    const BinIndex b = bin_index(s, i);
    out[i] = T(roi_pool_output<A>(s, input, rois, offset, b.n, b.c, b.ph, b.pw));
  }
}

template <typename T, typename A>
__global__ void backward_input_kernel(const T* grad, const T* rois, const T* offset,
                                      RoIPoolShape s, int64_t count, A* grad_input) {
  DCN_CUDA_KERNEL_LOOP(i, count) {
    const BinIndex b = bin_index(s, i);
    roi_pool_scatter(s, grad_input, rois, offset, b.n, b.c, b.ph, b.pw, A(grad[i]),
                     AtomicAdd<A>());
  }
}

// One thread per (RoI, bin), summing over output channels.
template <typename T>
__global__ void backward_offset_kernel(const T* grad, const T* input, const T* rois,
                                       const T* offset, RoIPoolShape s, int64_t count,
                                       T* grad_offset) {
  using A = at::opmath_type<T>;
  const int64_t bins = int64_t(s.pooled_h) * s.pooled_w;
  DCN_CUDA_KERNEL_LOOP(i, count) {
    roi_pool_offset_grad<A>(s, input, rois, offset, grad, i / bins,
                            static_cast<int>(i % bins / s.pooled_w),
                            static_cast<int>(i % s.pooled_w), grad_offset);
  }
}

template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

void forward_cuda(const at::Tensor& input, const at::Tensor& rois, const at::Tensor& offset,
                  const RoIPoolShape& s, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t count = out.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_fwd", [&] {
    forward_kernel<scalar_t><<<cuda_blocks(count), kCudaThreads, 0,
                               at::cuda::getCurrentCUDAStream()>>>(
        input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), data_or_null<scalar_t>(offset), s,
        count, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void backward_input_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& offset,
                         const RoIPoolShape& s, at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t count = grad.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_bwd", [&] {
    using A = at::opmath_type<scalar_t>;
    backward_input_kernel<scalar_t, A><<<cuda_blocks(count), kCudaThreads, 0,
                                         at::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), data_or_null<scalar_t>(offset), s,
        count, grad_input.data_ptr<A>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void backward_offset_cuda(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,
                          const at::Tensor& offset, const RoIPoolShape& s,
                          at::Tensor& grad_offset) {
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t count = rois.size(0) * s.pooled_h * s.pooled_w;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_off", [&] {
    backward_offset_kernel<scalar_t><<<cuda_blocks(count), kCudaThreads, 0,
                                       at::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
        data_or_null<scalar_t>(offset), s, count, grad_offset.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

const RoIPoolKernels kCudaKernels = {forward_cuda, backward_input_cuda, backward_offset_cuda};

DCN_DEFINE_ROI_POOL_ENTRY_POINTS(cuda, kCudaKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CUDA, m) { DCN_REGISTER_ROI_POOL_ENTRY_POINTS(cuda) }
