// Deformable convolution as im2col + GEMM: the math of one column entry, its input scatter and its
// offset/mask gradient. Column buffer layout: [channels * K, Q] where K = kernel_h * kernel_w and
// Q columns cover output positions p_begin .. p_begin + Q - 1 of one image (p = ho * out_w + wo).
#pragma once

#include "bilinear.h"

namespace dcn {

struct DeformConvShape {
  int channels, height, width;  // input image
  int kernel_h, kernel_w;
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int out_h, out_w;
  int offset_groups;  // channels / offset_groups consecutive channels share one offset field

  DCN_HOST_DEVICE int kernel_size() const { return kernel_h * kernel_w; }
  DCN_HOST_DEVICE int out_size() const { return out_h * out_w; }
  DCN_HOST_DEVICE int channels_per_offset_group() const { return channels / offset_groups; }
};

// Taps of sampling point k (= i * kernel_w + j) of offset group g at output position p.
// offset: this image's offsets [2 * offset_groups * K, out_h * out_w], (dy, dx) pairs per point.
template <typename A, typename T>
DCN_HOST_DEVICE BilinearTaps<A> deform_point_taps(const DeformConvShape& s, const T* offset, int g,
                                                  int k, int64_t p) {
  const int64_t P = s.out_size();
  const int64_t field = static_cast<int64_t>(g) * s.kernel_size() + k;
  const int ho = static_cast<int>(p / s.out_w), wo = static_cast<int>(p % s.out_w);
  const int i = k / s.kernel_w, j = k % s.kernel_w;
  const A y = A(ho * s.stride_h - s.pad_h + i * s.dilation_h) + A(offset[(2 * field) * P + p]);
  const A x = A(wo * s.stride_w - s.pad_w + j * s.dilation_w) + A(offset[(2 * field + 1) * P + p]);
  return zero_padded_taps<A>(s.height, s.width, y, x);
}

// Modulation scalar of point k of offset group g at p (DCNv2); 1 without a mask.
// mask: this image's mask [offset_groups * K, out_h * out_w] or nullptr.
template <typename A, typename T>
DCN_HOST_DEVICE A deform_point_mask(const DeformConvShape& s, const T* mask, int g, int k,
                                    int64_t p) {
  if (mask == nullptr) return A(1);
  return A(mask[(static_cast<int64_t>(g) * s.kernel_size() + k) * s.out_size() + p]);
}

// Adds one channel's share of the point's gradients: grad_col is the column gradient entry of
// that channel at the point; grad_y / grad_x collect d/dy and d/dx of the unmodulated sample,
// grad_mask collects the sample itself.
template <typename A, typename T>
DCN_HOST_DEVICE void accumulate_point_grad(const T* plane, const BilinearTaps<A>& taps, A grad_col,
                                           A& grad_y, A& grad_x, A& grad_mask) {
  A gy, gx;
  bilinear_coord_grad(plane, taps, gy, gx);
  grad_y += grad_col * gy;
  grad_x += grad_col * gx;
  grad_mask += grad_col * bilinear_sample(plane, taps);
}

// Stores the point's accumulated gradients into this image's grad_offset [2*G*K, P] and, unless
// null, grad_mask [G*K, P]; the offset gradients are modulated by the point's mask value.
template <typename A, typename T>
DCN_HOST_DEVICE void store_point_grad(const DeformConvShape& s, T* grad_offset, T* grad_mask,
                                      int g, int k, int64_t p, A mask, A grad_y, A grad_x,
                                      A grad_m) {
  const int64_t P = s.out_size();
  const int64_t field = static_cast<int64_t>(g) * s.kernel_size() + k;
  grad_offset[(2 * field) * P + p] = T(mask * grad_y);
  grad_offset[(2 * field + 1) * P + p] = T(mask * grad_x);
  if (grad_mask != nullptr) grad_mask[field * P + p] = T(grad_m);
}

}  // namespace dcn
