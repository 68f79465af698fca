// Deformable convolution as im2col + GEMM: the math of one column entry, its input scatter and its
// offset/mask gradient.
//
// Layouts. The input is read channels-last, [N, H*W, C], so that one sampling point of all
// channels is four contiguous corner vectors. Columns cover global output positions
// j = n * out_h * out_w + p (p = ho * out_w + wo) and the column buffer is [Q, C * K]: row q holds,
// per conv group g2 (of `groups`), kernel point k and channel cl within the group, the entry
// (g2 * K + k) * (C / groups) + cl. A 1x1 convolution with `groups` over that channels-last
// buffer is then exactly the deformable convolution's GEMM.
#pragma once

#include "bilinear.h"

namespace dcn {

struct DeformConvShape {
  int batch, channels, height, width;  // input images
  int kernel_h, kernel_w;
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int out_h, out_w;
  int groups;         // conv groups: C / groups channels per group
  int offset_groups;  // C / offset_groups consecutive channels share one offset field

  DCN_HOST_DEVICE int kernel_size() const { return kernel_h * kernel_w; }
  DCN_HOST_DEVICE int64_t out_size() const { return int64_t(out_h) * out_w; }
  DCN_HOST_DEVICE int64_t plane_size() const { return int64_t(height) * width; }
  DCN_HOST_DEVICE int channels_per_offset_group() const { return channels / offset_groups; }
  DCN_HOST_DEVICE int channels_per_group() const { return channels / groups; }
  DCN_HOST_DEVICE int64_t column_width() const { return int64_t(channels) * kernel_size(); }

  // Position of channel c's entry for kernel point k within a column row.
  DCN_HOST_DEVICE int64_t column_index(int k, int c) const {
    const int cpg = channels_per_group(), g2 = c / cpg;
    return (int64_t(g2) * kernel_size() + k) * cpg + (c - g2 * cpg);
  }
  // Channels c .. end-1 share an offset group and a conv group, so their column entries and
  // their sampling taps are contiguous / equal. Returns end.
  DCN_HOST_DEVICE int channel_run_end(int c) const {
    const int cpo = channels_per_offset_group(), cpg = channels_per_group();
    const int a = (c / cpo + 1) * cpo, b = (c / cpg + 1) * cpg;
    return a < b ? a : b;
  }
};

// Output position of global column j = n * out_h * out_w + p, p = ho * out_w + wo.
struct OutputPosition {
  int64_t n, p;
  int ho, wo;
};

DCN_HOST_DEVICE OutputPosition output_position(const DeformConvShape& s, int64_t j) {
  OutputPosition o;
  o.n = j / s.out_size();
  o.p = j - o.n * s.out_size();
  o.ho = static_cast<int>(o.p / s.out_w);
  o.wo = static_cast<int>(o.p - int64_t(o.ho) * s.out_w);
  return o;
}

// Taps of kernel point (i, j) of offset group g at output position o.
// offset: all images' offsets [N, 2 * offset_groups * K, out_h * out_w], (dy, dx) per point in
// row-major kernel order.
template <typename A, typename T>
DCN_HOST_DEVICE BilinearTaps<A> deform_point_taps(const DeformConvShape& s, const T* offset,
                                                  const OutputPosition& o, int g, int i, int j) {
  const int64_t P = s.out_size();
  const int64_t field = (o.n * s.offset_groups + g) * s.kernel_size() + i * s.kernel_w + j;
  const A y = A(o.ho * s.stride_h - s.pad_h + i * s.dilation_h) + A(offset[(2 * field) * P + o.p]);
  const A x =
      A(o.wo * s.stride_w - s.pad_w + j * s.dilation_w) + A(offset[(2 * field + 1) * P + o.p]);
  return zero_padded_taps<A>(s.height, s.width, y, x);
}

// Modulation scalar of kernel point k of offset group g at output position o (DCNv2); 1 without a
// mask. mask: [N, offset_groups * K, out_h * out_w] or nullptr.
template <typename A, typename T>
DCN_HOST_DEVICE A deform_point_mask(const DeformConvShape& s, const T* mask,
                                    const OutputPosition& o, int g, int k) {
  if (mask == nullptr) return A(1);
  return A(mask[((o.n * s.offset_groups + g) * s.kernel_size() + k) * s.out_size() + o.p]);
}

// Adds one channel's share of a point's gradients. image: the channel's data in a channels-last
// image (pixel stride C); grad_col: that channel's column-gradient entry at the point.
// grad_y / grad_x collect d/dy, d/dx of the unmodulated sample, grad_mask the sample itself.
template <typename A, typename T>
DCN_HOST_DEVICE void accumulate_point_grad(const T* image, int64_t pixel_stride,
                                           const BilinearTaps<A>& taps, A grad_col, A& grad_y,
                                           A& grad_x, A& grad_mask) {
  A gy, gx;
  bilinear_coord_grad(image, taps, pixel_stride, gy, gx);
  grad_y += grad_col * gy;
  grad_x += grad_col * gx;
  grad_mask += grad_col * bilinear_sample(image, taps, pixel_stride);
}

// Stores a point's accumulated gradients into grad_offset [N, 2*G*K, P] and, unless null,
// grad_mask [N, G*K, P]; the offset gradients are modulated by the point's mask value.
template <typename A, typename T>
DCN_HOST_DEVICE void store_point_grad(const DeformConvShape& s, T* grad_offset, T* grad_mask,
                                      const OutputPosition& o, int g, int k, A mask, A grad_y,
                                      A grad_x, A grad_m) {
  const int64_t P = s.out_size();
  const int64_t field = (o.n * s.offset_groups + g) * s.kernel_size() + k;
  grad_offset[(2 * field) * P + o.p] = T(mask * grad_y);
  grad_offset[(2 * field + 1) * P + o.p] = T(mask * grad_x);
  if (grad_mask != nullptr) grad_mask[field * P + o.p] = T(grad_m);
}

}  // namespace dcn
