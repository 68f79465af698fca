// Host-side argument checks shared by the PyTorch and ONNX Runtime bindings: each returns an
// empty string when the arguments fit (and fills the kernel geometry), else a message that names
// the expected shape. Bindings turn the message into their own error (RuntimeError, OrtStatus).
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "../kernels/deform_im2col.h"
#include "../kernels/deform_roi_pool.h"

namespace dcn {

using Shape = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

template <typename... Ts>
std::string message(const Ts&... parts) {
  std::ostringstream o;
  (o << ... << parts);
  return o.str();
}

struct DeformConvParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1, offset_groups = 1;
};

// input [N, C, H, W], weight [C_out, C/groups, kh, kw], offset [N, 2*G*kh*kw, out_h, out_w],
// mask [N, G*kh*kw, out_h, out_w] (or null), bias [C_out] (or null).
inline std::string check_deform_conv_shapes(const Shape& input, const Shape& weight,
                                            const Shape& offset, const Shape* mask,
                                            const Shape* bias, const DeformConvParams& p,
                                            DeformConvShape* s) {
  if (input.size() != 4) return message("input must be [N, C, H, W], got ", shape_str(input));
  if (weight.size() != 4)
    return message("weight must be [C_out, C/groups, kh, kw], got ", shape_str(weight));
  if (offset.size() != 4)
    return message("offset must be [N, 2*offset_groups*kh*kw, out_h, out_w], got ",
                   shape_str(offset));
  if (p.stride_h <= 0 || p.stride_w <= 0)
    return message("stride must be positive, got (", p.stride_h, ", ", p.stride_w, ")");
  if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0)
    return message("padding must be non-negative, got (", p.pad_top, ", ", p.pad_left, ", ",
                   p.pad_bottom, ", ", p.pad_right, ")");
  if (p.dilation_h <= 0 || p.dilation_w <= 0)
    return message("dilation must be positive, got (", p.dilation_h, ", ", p.dilation_w, ")");
  if (p.groups <= 0) return message("groups must be positive, got ", p.groups);
  if (p.offset_groups <= 0) return message("offset_groups must be positive, got ", p.offset_groups);
  const int64_t n = input[0], c = input[1], h = input[2], w = input[3];
  const int64_t c_out = weight[0], kh = weight[2], kw = weight[3];
  if (n < 0 || c <= 0 || h <= 0 || w <= 0)
    return message("input must have channels and pixels, got ", shape_str(input));
  if (kh <= 0 || kw <= 0 || c_out <= 0)
    return message("weight must be non-empty, got ", shape_str(weight));
  if (c % p.groups != 0 || weight[1] * p.groups != c)
    return message("weight must be [C_out, C/groups, kh, kw] = [", c_out, ", ", c / p.groups, ", ",
                   kh, ", ", kw, "] for C=", c, " and groups=", p.groups, ", got ",
                   shape_str(weight));
  if (c_out % p.groups != 0)
    return message("C_out=", c_out, " must be divisible by groups=", p.groups);
  if (c % p.offset_groups != 0)
    return message("C=", c, " must be divisible by offset_groups=", p.offset_groups);
  const int64_t out_h =
      (h + p.pad_top + p.pad_bottom - (p.dilation_h * (kh - 1) + 1)) / p.stride_h + 1;
  const int64_t out_w =
      (w + p.pad_left + p.pad_right - (p.dilation_w * (kw - 1) + 1)) / p.stride_w + 1;
  if (out_h <= 0 || out_w <= 0 || h + p.pad_top + p.pad_bottom < p.dilation_h * (kh - 1) + 1 ||
      w + p.pad_left + p.pad_right < p.dilation_w * (kw - 1) + 1)
    return message("the ", kh, "x", kw, " kernel (dilation ", p.dilation_h, "x", p.dilation_w,
                   ") does not fit the padded ", h, "x", w, " input");
  const int64_t points = p.offset_groups * kh * kw;
  const Shape want_offset = {n, 2 * points, out_h, out_w};
  if (offset != want_offset)
    return message("offset must be [N, 2*offset_groups*kh*kw, out_h, out_w] = ",
                   shape_str(want_offset), ", got ", shape_str(offset));
  if (mask != nullptr && *mask != Shape{n, points, out_h, out_w})
    return message("mask must be [N, offset_groups*kh*kw, out_h, out_w] = ",
                   shape_str({n, points, out_h, out_w}), ", got ", shape_str(*mask));
  if (bias != nullptr && *bias != Shape{c_out})
    return message("bias must be [", c_out, "], got ", shape_str(*bias));
  if (h * w >= (int64_t(1) << 31) || n >= (int64_t(1) << 31) || c >= (int64_t(1) << 24))
    return "images of 2^31 pixels or more, batches of 2^31 images or 2^24 channels are not "
           "supported";
  s->batch = static_cast<int>(n);
  s->channels = static_cast<int>(c);
  s->height = static_cast<int>(h);
  s->width = static_cast<int>(w);
  s->kernel_h = static_cast<int>(kh);
  s->kernel_w = static_cast<int>(kw);
  s->stride_h = static_cast<int>(p.stride_h);
  s->stride_w = static_cast<int>(p.stride_w);
  s->pad_h = static_cast<int>(p.pad_top);
  s->pad_w = static_cast<int>(p.pad_left);
  s->dilation_h = static_cast<int>(p.dilation_h);
  s->dilation_w = static_cast<int>(p.dilation_w);
  s->out_h = static_cast<int>(out_h);
  s->out_w = static_cast<int>(out_w);
  s->groups = static_cast<int>(p.groups);
  s->offset_groups = static_cast<int>(p.offset_groups);
  return "";
}

constexpr int64_t kMaxSamplingRatio = 64;

// input [N, C, H, W], rois [K, 5], offset [K, 2, pooled_h, pooled_w] (or null).
inline std::string check_roi_pool_shapes(const Shape& input, const Shape& rois, const Shape* offset,
                                         int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                                         int64_t sampling_ratio, double gamma, bool aligned,
                                         bool position_sensitive, RoIPoolShape* s) {
  if (input.size() != 4) return message("input must be [N, C, H, W], got ", shape_str(input));
  if (rois.size() != 2 || rois[1] != 5)
    return message("rois must be [K, 5] rows of (batch_index, x1, y1, x2, y2), got ",
                   shape_str(rois));
  if (pooled_h <= 0 || pooled_w <= 0)
    return message("output size must be positive, got (", pooled_h, ", ", pooled_w, ")");
  if (!(std::isfinite(spatial_scale) && spatial_scale > 0))
    return message("spatial_scale must be a positive number, got ", spatial_scale);
  if (!std::isfinite(gamma)) return message("gamma must be finite, got ", gamma);
  if (sampling_ratio > kMaxSamplingRatio)
    return message("sampling_ratio must be at most ", kMaxSamplingRatio,
                   " (<= 0 picks it per RoI), got ", sampling_ratio);
  const int64_t c = input[1], h = input[2], w = input[3], k = rois[0];
  if (input[0] < 0 || c <= 0 || h <= 0 || w <= 0)
    return message("input must have channels and pixels, got ", shape_str(input));
  if (h * w >= (int64_t(1) << 31)) return "maps of 2^31 pixels or more are not supported";
  if (position_sensitive && c % (pooled_h * pooled_w) != 0)
    return message("input channels (", c,
                   ") must be output_dim * pooled_h * pooled_w with pooled "
                   "size ",
                   pooled_h, "x", pooled_w);
  if (offset != nullptr && *offset != Shape{k, 2, pooled_h, pooled_w})
    return message("offset must be [K, 2, pooled_h, pooled_w] = ",
                   shape_str({k, 2, pooled_h, pooled_w}), ", got ", shape_str(*offset));
  s->channels = static_cast<int>(c);
  s->height = static_cast<int>(h);
  s->width = static_cast<int>(w);
  s->pooled_h = static_cast<int>(pooled_h);
  s->pooled_w = static_cast<int>(pooled_w);
  s->out_channels = static_cast<int>(position_sensitive ? c / (pooled_h * pooled_w) : c);
  s->sampling_ratio = static_cast<int>(sampling_ratio > 0 ? sampling_ratio : 0);
  s->position_sensitive = position_sensitive;
  s->aligned = aligned;
  s->spatial_scale = spatial_scale;
  s->gamma = gamma;
  return "";
}

// Host copy of rois [K, 5]: every batch index must be an integer in [0, N).
template <typename T>
std::string check_roi_batch_indices(const T* rois, int64_t k, int64_t n) {
  for (int64_t i = 0; i < k; ++i) {
    const double b = static_cast<double>(rois[i * 5]);
    if (!(b >= 0 && b < static_cast<double>(n) && b == std::floor(b)))
      return message("rois[:, 0] must hold integer batch indices in [0, ", n, "), got ", b,
                     " in row ", i);
  }
  return "";
}

}  // namespace dcn
