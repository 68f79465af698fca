// CPU column kernels for deformable convolution: parallel loops over the shared math in
// csrc/kernels/deform_im2col.h. The input is channels-last, so every sampling point's taps are
// computed once and then applied to a contiguous run of channels in a SIMD loop.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "deform_conv2d.h"

namespace dcn {
namespace {

template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Channels begin .. end-1 share offset group g and one conv group.
struct ChannelRun {
  int begin, end, g;
};

std::vector<ChannelRun> channel_runs(const DeformConvShape& s, int c_lo, int c_hi) {
  std::vector<ChannelRun> runs;
  for (int c = c_lo; c < c_hi;) {
    const int end = std::min(s.channel_run_end(c), c_hi);
    runs.push_back({c, end, c / s.channels_per_offset_group()});
    c = end;
  }
  return runs;
}

// Calls fn(o, q, k, run, taps, mask) for every kernel point k and channel run of the columns
// q in [q_lo, q_hi) (global column j0 + q, output position o); taps are computed once per offset
// group.
template <typename A, typename T, typename Fn>
void for_each_channel_run(const DeformConvShape& s, const T* offset, const T* mask,
                          const std::vector<ChannelRun>& runs, int64_t j0, int64_t q_lo,
                          int64_t q_hi, const Fn& fn) {
  for (int64_t q = q_lo; q < q_hi; ++q) {
    const OutputPosition o = output_position(s, j0 + q);
    for (int i = 0; i < s.kernel_h; ++i) {
      for (int j = 0; j < s.kernel_w; ++j) {
        const int k = i * s.kernel_w + j;
        int g = -1;
        BilinearTaps<A> taps;
        A m = A(1);
        for (const ChannelRun& run : runs) {
          if (run.g != g) {
            g = run.g;
            taps = deform_point_taps<A>(s, offset, o, g, i, j);
            m = deform_point_mask<A>(s, mask, o, g, k);
          }
          fn(o, q, k, run, taps, m);
        }
      }
    }
  }
}

void im2col_cpu(const at::Tensor& image, const at::Tensor& offset, const at::Tensor& mask,
                const DeformConvShape& s, int64_t j0, at::Tensor& col) {
  const int64_t Q = col.size(0), CK = s.column_width(), C = s.channels;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "im2col", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *in = image.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = data_or_null<scalar_t>(mask);
    scalar_t* out = col.data_ptr<scalar_t>();
    const std::vector<ChannelRun> runs = channel_runs(s, 0, s.channels);
    at::parallel_for(0, Q, 8, [&](int64_t lo, int64_t hi) {
      for_each_channel_run<A>(s, off, msk, runs, j0, lo, hi,
          [&](const OutputPosition& o, int64_t q, int k, const ChannelRun& r,
              const BilinearTaps<A>& t, A m) {
            const scalar_t* src = in + o.n * s.plane_size() * C + r.begin;
            scalar_t* dst = out + q * CK + s.column_index(k, r.begin);
            _Pragma("omp simd")
            for (int i = 0; i < r.end - r.begin; ++i)
              dst[i] = scalar_t(m * bilinear_sample(src + i, t, C));
          });
    });
  });
}

void col2im_cpu(const at::Tensor& grad_col, const at::Tensor& offset, const at::Tensor& mask,
                const DeformConvShape& s, int64_t j0, at::Tensor& grad_image) {
  const int64_t Q = grad_col.size(0), CK = s.column_width(), C = s.channels;
  // Threads own disjoint channel ranges of the input gradient, so the scatter needs no atomics.
  const int ranges = std::min<int>(s.channels, at::get_num_threads());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_col.scalar_type(), "col2im", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *gcol = grad_col.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    const scalar_t* msk = data_or_null<scalar_t>(mask);
    A* gin = grad_image.data_ptr<A>();
    const auto add = [](A* p, A v) { *p += v; };
    at::parallel_for(0, ranges, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const auto runs = channel_runs(s, static_cast<int>(r * C / ranges),
                                       static_cast<int>((r + 1) * C / ranges));
        for_each_channel_run<A>(s, off, msk, runs, j0, 0, Q,
            [&](const OutputPosition& o, int64_t q, int k, const ChannelRun& run,
                const BilinearTaps<A>& t, A m) {
              A* dst = gin + o.n * s.plane_size() * C + run.begin;
              const scalar_t* src = gcol + q * CK + s.column_index(k, run.begin);
              for (int i = 0; i < run.end - run.begin; ++i)
                bilinear_scatter(dst + i, t, C, m * A(src[i]), add);
            });
      }
    });
  });
}

void coord_grad_cpu(const at::Tensor& grad_col, const at::Tensor& image, const at::Tensor& offset,
                    const at::Tensor& mask, const DeformConvShape& s, int64_t j0,
                    at::Tensor& grad_offset, at::Tensor& grad_mask) {
  const int64_t Q = grad_col.size(0), CK = s.column_width(), C = s.channels;
  const int cpo = s.channels_per_offset_group();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "coord_grad", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *in = image.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>();
    const scalar_t *gcol = grad_col.data_ptr<scalar_t>(), *msk = data_or_null<scalar_t>(mask);
    scalar_t* goff = grad_offset.data_ptr<scalar_t>();
    scalar_t* gmsk = data_or_null<scalar_t>(grad_mask);
    const std::vector<ChannelRun> runs = channel_runs(s, 0, s.channels);
    at::parallel_for(0, Q, 8, [&](int64_t lo, int64_t hi) {
      // Runs come in channel order, so the runs of one offset group are consecutive: sum over
      // them, then store when the group ends.
      A gy = A(0), gx = A(0), gm = A(0);
      for_each_channel_run<A>(s, off, msk, runs, j0, lo, hi,
          [&](const OutputPosition& o, int64_t q, int k, const ChannelRun& r,
              const BilinearTaps<A>& t, A m) {
            const scalar_t* img = in + o.n * s.plane_size() * C + r.begin;
            const scalar_t* src = gcol + q * CK + s.column_index(k, r.begin);
            _Pragma("omp simd reduction(+ : gy, gx, gm)")
            for (int i = 0; i < r.end - r.begin; ++i)
              accumulate_point_grad(img + i, C, t, A(src[i]), gy, gx, gm);
            if (r.end % cpo == 0) {
              store_point_grad(s, goff, gmsk, o, r.g, k, m, gy, gx, gm);
              gy = gx = gm = A(0);
            }
          });
    });
  });
}

// PyTorch's CPU copy of a transposed view runs an element-wise strided loop; a tiled, parallel
// transpose is several times faster on the activations the driver re-lays out.
at::Tensor transpose_cpu(const at::Tensor& src_) {
  const at::Tensor src = src_.contiguous();
  const int64_t B = src.size(0), R = src.size(1), S = src.size(2);
  at::Tensor dst = at::empty({B, S, R}, src.options());
  // Small tiles: with power-of-two row lengths, a tile's rows share cache sets.
  constexpr int64_t kTile = 8;
  const int64_t tiles_r = (R + kTile - 1) / kTile, tiles_s = (S + kTile - 1) / kTile;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "transpose", [&] {
    const scalar_t* in = src.data_ptr<scalar_t>();
    scalar_t* out = dst.data_ptr<scalar_t>();
    at::parallel_for(0, B * tiles_r * tiles_s, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t b = t / (tiles_r * tiles_s);
        const int64_t r0 = (t / tiles_s % tiles_r) * kTile, s0 = (t % tiles_s) * kTile;
        const scalar_t* from = in + b * R * S;
        scalar_t* to = out + b * R * S;
        for (int64_t c = s0; c < std::min(S, s0 + kTile); ++c)
          for (int64_t r = r0; r < std::min(R, r0 + kTile); ++r) to[c * R + r] = from[r * S + c];
      }
    });
  });
  return dst;
}

const DeformColumnKernels kCpuKernels = {im2col_cpu, col2im_cpu, coord_grad_cpu, transpose_cpu};

DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(cpu, kCpuKernels)

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_cpu);
  m.impl("_deform_conv2d_backward", &dcn::deform_conv2d_backward_cpu);
}
