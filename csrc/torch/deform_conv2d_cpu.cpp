// CPU column kernels for deformable convolution: parallel loops over the shared math in
// csrc/kernels/deform_im2col.h. Work is split into (offset group, kernel point, block of columns)
// items so that each point's bilinear taps are computed once and reused by all its channels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "deform_conv2d.h"

namespace dcn {
namespace {

constexpr int64_t kBlock = 128;  // columns whose taps are kept on the stack at once

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Taps and mask values of columns q0 .. q0+n-1 (n <= kBlock) of point (g, k).
template <typename A, typename T>
void block_taps(const DeformConvShape& s, const T* offset, const T* mask, int g, int k,
                int64_t p0, int64_t n, BilinearTaps<A>* taps, A* m) {
  for (int64_t q = 0; q < n; ++q) {
    taps[q] = deform_point_taps<A>(s, offset, g, k, p0 + q);
    m[q] = deform_point_mask<A>(s, mask, g, k, p0 + q);
  }
}

// Runs fn(g, k, q0, n) over all (offset group, kernel point, column block) items in parallel.
template <typename Fn>
void for_each_point_block(const DeformConvShape& s, int64_t q_count, const Fn& fn) {
  const int K = s.kernel_size();
  const int64_t blocks = ceil_div(q_count, kBlock);
  at::parallel_for(0, int64_t(s.offset_groups) * K * blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t gk = item / blocks, q0 = (item % blocks) * kBlock;
      fn(static_cast<int>(gk / K), static_cast<int>(gk % K), q0, std::min(kBlock, q_count - q0));
    }
  });
}

void im2col_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                const DeformConvShape& s, int64_t p_begin, at::Tensor& col) {
  const int64_t Q = col.size(1), plane = int64_t(s.height) * s.width;
  const int K = s.kernel_size(), cpg = s.channels_per_offset_group();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "im2col", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *in = input.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = data_or_null<scalar_t>(mask);
    scalar_t* out = col.data_ptr<scalar_t>();
    for_each_point_block(s, Q, [&](int g, int k, int64_t q0, int64_t n) {
      BilinearTaps<A> taps[kBlock];
      A m[kBlock];
      block_taps(s, off, msk, g, k, p_begin + q0, n, taps, m);
      for (int c = g * cpg; c < (g + 1) * cpg; ++c) {
        const scalar_t* im = in + c * plane;
        scalar_t* row = out + (int64_t(c) * K + k) * Q + q0;
        for (int64_t q = 0; q < n; ++q) row[q] = scalar_t(m[q] * bilinear_sample(im, taps[q]));
      }
    });
  });
}

void col2im_cpu(const at::Tensor& grad_col, const at::Tensor& offset, const at::Tensor& mask,
                const DeformConvShape& s, int64_t p_begin, at::Tensor& grad_input) {
  const int64_t Q = grad_col.size(1), plane = int64_t(s.height) * s.width;
  const int K = s.kernel_size(), cpg = s.channels_per_offset_group();
  // Threads own disjoint channel ranges of the input gradient, so the scatter needs no atomics;
  // each range recomputes the taps it needs.
  const int64_t ranges = std::min<int64_t>(cpg, 2 * at::get_num_threads());
  const int64_t per_range = ceil_div(cpg, ranges);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_col.scalar_type(), "col2im", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *gcol = grad_col.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = data_or_null<scalar_t>(mask);
    A* gin = grad_input.data_ptr<A>();
    const auto add = [](A* p, A v) { *p += v; };
    at::parallel_for(0, s.offset_groups * ranges, 1, [&](int64_t lo, int64_t hi) {
      BilinearTaps<A> taps[kBlock];
      A m[kBlock];
      for (int64_t item = lo; item < hi; ++item) {
        const int g = static_cast<int>(item / ranges);
        const int c_lo = g * cpg + static_cast<int>((item % ranges) * per_range);
        const int c_hi = std::min(c_lo + static_cast<int>(per_range), (g + 1) * cpg);
        for (int k = 0; k < K && c_lo < c_hi; ++k) {
          for (int64_t q0 = 0; q0 < Q; q0 += kBlock) {
            const int64_t n = std::min(kBlock, Q - q0);
            block_taps(s, off, msk, g, k, p_begin + q0, n, taps, m);
            for (int c = c_lo; c < c_hi; ++c) {
              const scalar_t* row = gcol + (int64_t(c) * K + k) * Q + q0;
              for (int64_t q = 0; q < n; ++q)
                bilinear_scatter(gin + c * plane, taps[q], m[q] * A(row[q]), add);
            }
          }
        }
      }
    });
  });
}

void coord_grad_cpu(const at::Tensor& grad_col, const at::Tensor& input, const at::Tensor& offset,
                    const at::Tensor& mask, const DeformConvShape& s, int64_t p_begin,
                    at::Tensor& grad_offset, at::Tensor& grad_mask) {
  const int64_t Q = grad_col.size(1), plane = int64_t(s.height) * s.width;
  const int K = s.kernel_size(), cpg = s.channels_per_offset_group();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "coord_grad", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *in = input.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    const scalar_t *gcol = grad_col.data_ptr<scalar_t>(), *msk = data_or_null<scalar_t>(mask);
    scalar_t* goff = grad_offset.data_ptr<scalar_t>();
    scalar_t* gmsk = data_or_null<scalar_t>(grad_mask);
    for_each_point_block(s, Q, [&](int g, int k, int64_t q0, int64_t n) {
      BilinearTaps<A> taps[kBlock];
      A m[kBlock], gy[kBlock] = {}, gx[kBlock] = {}, gm[kBlock] = {};
      block_taps(s, off, msk, g, k, p_begin + q0, n, taps, m);
      for (int c = g * cpg; c < (g + 1) * cpg; ++c) {
        const scalar_t* row = gcol + (int64_t(c) * K + k) * Q + q0;
        for (int64_t q = 0; q < n; ++q)
          accumulate_point_grad(in + c * plane, taps[q], A(row[q]), gy[q], gx[q], gm[q]);
      }
      for (int64_t q = 0; q < n; ++q)
        store_point_grad(s, goff, gmsk, g, k, p_begin + q0 + q, m[q], gy[q], gx[q], gm[q]);
    });
  });
}

const DeformColumnKernels kCpuKernels = {im2col_cpu, col2im_cpu, coord_grad_cpu};

DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(cpu, kCpuKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_cpu);
  m.impl("_deform_conv2d_backward", &dcn::deform_conv2d_backward_cpu);
}
