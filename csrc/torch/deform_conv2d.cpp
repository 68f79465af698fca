// Device-agnostic part of deformable convolution: argument checks and the im2col + GEMM driver.
#include "deform_conv2d.h"

#include <ATen/OpMathType.h>

#include <algorithm>

#include "tensor_checks.h"

namespace dcn {
namespace {

// Upper bound on column-buffer entries per chunk (32 MB of float): bounds memory for big images
// while keeping each GEMM large.
constexpr int64_t kMaxColumnEntries = int64_t(1) << 23;

void check_same(const at::Tensor& input, const at::Tensor& t, const char* name) {
  check_same_device_dtype("deform_conv2d", input, t, name);
}

}  // namespace

DeformConvShape check_deform_conv2d_args(const at::Tensor& input, const at::Tensor& weight,
                                         const at::Tensor& offset,
                                         const std::optional<at::Tensor>& mask,
                                         const std::optional<at::Tensor>& bias, int64_t stride_h,
                                         int64_t stride_w, int64_t pad_h, int64_t pad_w,
                                         int64_t dilation_h, int64_t dilation_w, int64_t groups,
                                         int64_t offset_groups) {
  TORCH_CHECK(input.dim() == 4, "deform_conv2d: input must be [N, C, H, W], got ",
              shape_str(input.sizes()));
  TORCH_CHECK(weight.dim() == 4, "deform_conv2d: weight must be [C_out, C/groups, kh, kw], got ",
              shape_str(weight.sizes()));
  TORCH_CHECK(offset.dim() == 4,
              "deform_conv2d: offset must be [N, 2*offset_groups*kh*kw, out_h, out_w], got ",
              shape_str(offset.sizes()));
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "deform_conv2d: input must be a floating-point tensor, got ", input.scalar_type());
  check_same(input, weight, "weight");
  check_same(input, offset, "offset");
  if (mask) check_same(input, *mask, "mask");
  if (bias) check_same(input, *bias, "bias");
  TORCH_CHECK(stride_h > 0 && stride_w > 0, "deform_conv2d: stride must be positive, got (",
              stride_h, ", ", stride_w, ")");
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, "deform_conv2d: padding must be non-negative, got (",
              pad_h, ", ", pad_w, ")");
  TORCH_CHECK(dilation_h > 0 && dilation_w > 0, "deform_conv2d: dilation must be positive, got (",
              dilation_h, ", ", dilation_w, ")");
  TORCH_CHECK(groups > 0, "deform_conv2d: groups must be positive, got ", groups);
  TORCH_CHECK(offset_groups > 0, "deform_conv2d: offset_groups must be positive, got ",
              offset_groups);

  const int64_t n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const int64_t c_out = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  TORCH_CHECK(c > 0 && h > 0 && w > 0, "deform_conv2d: input must have channels and pixels, got ",
              shape_str(input.sizes()));
  TORCH_CHECK(kh > 0 && kw > 0 && c_out > 0, "deform_conv2d: weight must be non-empty, got ",
              shape_str(weight.sizes()));
  TORCH_CHECK(c % groups == 0 && weight.size(1) * groups == c,
              "deform_conv2d: weight must be [C_out, C/groups, kh, kw] = [", c_out, ", ",
              c / groups, ", ", kh, ", ", kw, "] for C=", c, " and groups=", groups, ", got ",
              shape_str(weight.sizes()));
  TORCH_CHECK(c_out % groups == 0, "deform_conv2d: C_out=", c_out,
              " must be divisible by groups=", groups);
  TORCH_CHECK(c % offset_groups == 0, "deform_conv2d: C=", c,
              " must be divisible by offset_groups=", offset_groups);

  const int64_t out_h = (h + 2 * pad_h - (dilation_h * (kh - 1) + 1)) / stride_h + 1;
  const int64_t out_w = (w + 2 * pad_w - (dilation_w * (kw - 1) + 1)) / stride_w + 1;
  TORCH_CHECK(out_h > 0 && out_w > 0, "deform_conv2d: the ", kh, "x", kw,
              " kernel (dilation ", dilation_h, "x", dilation_w, ") does not fit the padded ", h,
              "x", w, " input (padding ", pad_h, "x", pad_w, ")");
  const int64_t points = offset_groups * kh * kw;
  const std::vector<int64_t> want_offset = {n, 2 * points, out_h, out_w};
  TORCH_CHECK(offset.sizes() == at::IntArrayRef(want_offset),
              "deform_conv2d: offset must be [N, 2*offset_groups*kh*kw, out_h, out_w] = ",
              shape_str(want_offset), ", got ", shape_str(offset.sizes()));
  if (mask) {
    const std::vector<int64_t> want_mask = {n, points, out_h, out_w};
    TORCH_CHECK(mask->sizes() == at::IntArrayRef(want_mask),
                "deform_conv2d: mask must be [N, offset_groups*kh*kw, out_h, out_w] = ",
                shape_str(want_mask), ", got ", shape_str(mask->sizes()));
  }
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == c_out, "deform_conv2d: bias must be [",
                c_out, "], got ", shape_str(bias->sizes()));
  }
  TORCH_CHECK(h * w < (int64_t(1) << 31) && out_h * out_w < (int64_t(1) << 31),
              "deform_conv2d: images of 2^31 pixels or more are not supported");

  DeformConvShape s;
  s.channels = static_cast<int>(c);
  s.height = static_cast<int>(h);
  s.width = static_cast<int>(w);
  s.kernel_h = static_cast<int>(kh);
  s.kernel_w = static_cast<int>(kw);
  s.stride_h = static_cast<int>(stride_h);
  s.stride_w = static_cast<int>(stride_w);
  s.pad_h = static_cast<int>(pad_h);
  s.pad_w = static_cast<int>(pad_w);
  s.dilation_h = static_cast<int>(dilation_h);
  s.dilation_w = static_cast<int>(dilation_w);
  s.out_h = static_cast<int>(out_h);
  s.out_w = static_cast<int>(out_w);
  s.offset_groups = static_cast<int>(offset_groups);
  return s;
}

namespace {

// Columns per chunk for one image.
int64_t column_chunk(const DeformConvShape& s) {
  const int64_t rows = int64_t(s.channels) * s.kernel_size();
  return std::max<int64_t>(1, std::min<int64_t>(s.out_size(), kMaxColumnEntries / rows));
}

// A [rows, q] contiguous view of the first rows*q entries of a flat buffer.
at::Tensor column_view(const at::Tensor& buffer, int64_t rows, int64_t q) {
  return buffer.narrow(0, 0, rows * q).view({rows, q});
}

at::Tensor image_or_undefined(const std::optional<at::Tensor>& t, int64_t b) {
  return t ? t->select(0, b) : at::Tensor();
}

}  // namespace

at::Tensor deform_conv2d_forward(const DeformColumnKernels& kernels, const at::Tensor& input_,
                                 const at::Tensor& weight_, const at::Tensor& offset_,
                                 const std::optional<at::Tensor>& mask_,
                                 const std::optional<at::Tensor>& bias, int64_t stride_h,
                                 int64_t stride_w, int64_t pad_h, int64_t pad_w,
                                 int64_t dilation_h, int64_t dilation_w, int64_t groups,
                                 int64_t offset_groups) {
  const DeformConvShape s =
      check_deform_conv2d_args(input_, weight_, offset_, mask_, bias, stride_h, stride_w, pad_h,
                               pad_w, dilation_h, dilation_w, groups, offset_groups);
  const at::Tensor input = input_.contiguous(), offset = offset_.contiguous();
  const std::optional<at::Tensor> mask =
      mask_ ? std::optional<at::Tensor>(mask_->contiguous()) : std::nullopt;
  const int64_t n = input.size(0), c_out = weight_.size(0), P = s.out_size();
  const int64_t rows_g = int64_t(s.channels / groups) * s.kernel_size();
  const at::Tensor weight = weight_.contiguous().view({groups, c_out / groups, rows_g});

  at::Tensor out = at::empty({n, c_out, s.out_h, s.out_w}, input.options());
  const int64_t chunk = column_chunk(s);
  const at::Tensor buffer = at::empty({groups * rows_g * chunk}, input.options());
  for (int64_t b = 0; b < n; ++b) {
    const at::Tensor out_b = out.select(0, b).view({groups, c_out / groups, P});
    const at::Tensor mask_b = image_or_undefined(mask, b);
    for (int64_t p0 = 0; p0 < P; p0 += chunk) {
      const int64_t q = std::min(chunk, P - p0);
      at::Tensor col = column_view(buffer, groups * rows_g, q);
      kernels.im2col(input.select(0, b), offset.select(0, b), mask_b, s, p0, col);
      const at::Tensor col_g = col.view({groups, rows_g, q});
      for (int64_t g = 0; g < groups; ++g) {
        at::Tensor dst = out_b.select(0, g);
        if (q == P) {
          at::mm_out(dst, weight.select(0, g), col_g.select(0, g));
        } else {
          dst.narrow(1, p0, q).copy_(at::mm(weight.select(0, g), col_g.select(0, g)));
        }
      }
    }
  }
  if (bias) out.add_(bias->view({1, c_out, 1, 1}));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward(
    const DeformColumnKernels& kernels, const at::Tensor& grad_out_, const at::Tensor& input_,
    const at::Tensor& weight_, const at::Tensor& offset_, const std::optional<at::Tensor>& mask_,
    const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w, int64_t pad_h,
    int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t groups,
    int64_t offset_groups) {
  const DeformConvShape s =
      check_deform_conv2d_args(input_, weight_, offset_, mask_, bias, stride_h, stride_w, pad_h,
                               pad_w, dilation_h, dilation_w, groups, offset_groups);
  const int64_t n = input_.size(0), c_out = weight_.size(0), P = s.out_size();
  const std::vector<int64_t> want_grad = {n, c_out, s.out_h, s.out_w};
  TORCH_CHECK(grad_out_.sizes() == at::IntArrayRef(want_grad),
              "deform_conv2d backward: grad_output must be ", shape_str(want_grad), ", got ",
              shape_str(grad_out_.sizes()));
  check_same(input_, grad_out_, "grad_output");

  const at::Tensor input = input_.contiguous(), offset = offset_.contiguous();
  const at::Tensor grad_out = grad_out_.contiguous();
  const std::optional<at::Tensor> mask =
      mask_ ? std::optional<at::Tensor>(mask_->contiguous()) : std::nullopt;
  const int64_t c_out_g = c_out / groups;
  const int64_t rows_g = int64_t(s.channels / groups) * s.kernel_size();
  const at::Tensor weight = weight_.contiguous().view({groups, c_out_g, rows_g});
  const auto acc = input.options().dtype(at::toOpMathType(input.scalar_type()));

  at::Tensor grad_input = at::zeros(input.sizes(), acc);
  at::Tensor grad_weight = at::zeros({groups, c_out_g, rows_g}, acc);
  at::Tensor grad_offset = at::empty_like(offset);
  at::Tensor grad_mask = mask ? at::empty_like(*mask) : at::empty({0}, input.options());

  const int64_t chunk = column_chunk(s);
  const at::Tensor col_buffer = at::empty({groups * rows_g * chunk}, input.options());
  const at::Tensor grad_col_buffer = at::empty({groups * rows_g * chunk}, input.options());
  for (int64_t b = 0; b < n; ++b) {
    const at::Tensor grad_out_b = grad_out.select(0, b).view({groups, c_out_g, P});
    const at::Tensor input_b = input.select(0, b), offset_b = offset.select(0, b);
    const at::Tensor mask_b = image_or_undefined(mask, b);
    at::Tensor grad_input_b = grad_input.select(0, b);
    at::Tensor grad_offset_b = grad_offset.select(0, b);
    at::Tensor grad_mask_b = mask ? grad_mask.select(0, b) : at::Tensor();
    for (int64_t p0 = 0; p0 < P; p0 += chunk) {
      const int64_t q = std::min(chunk, P - p0);
      const at::Tensor go = q == P ? grad_out_b : grad_out_b.narrow(2, p0, q).contiguous();
      at::Tensor grad_col = column_view(grad_col_buffer, groups * rows_g, q);
      const at::Tensor grad_col_g = grad_col.view({groups, rows_g, q});
      for (int64_t g = 0; g < groups; ++g) {
        at::Tensor dst = grad_col_g.select(0, g);
        at::mm_out(dst, weight.select(0, g).t(), go.select(0, g));
      }
      kernels.col2im(grad_col, offset_b, mask_b, s, p0, grad_input_b);
      kernels.coord_grad(grad_col, input_b, offset_b, mask_b, s, p0, grad_offset_b, grad_mask_b);

      at::Tensor col = column_view(col_buffer, groups * rows_g, q);
      kernels.im2col(input_b, offset_b, mask_b, s, p0, col);
      const at::Tensor col_g = col.view({groups, rows_g, q});
      for (int64_t g = 0; g < groups; ++g) {
        const at::Tensor prod = at::mm(go.select(0, g), col_g.select(0, g).t());
        grad_weight.select(0, g).add_(prod);
      }
    }
  }
  at::Tensor grad_bias = bias ? grad_out.sum({0, 2, 3}, false, at::toOpMathType(input.scalar_type())).to(input.scalar_type())
                              : at::empty({0}, input.options());
  return {grad_input.to(input.scalar_type()),
          grad_weight.view(weight_.sizes()).to(input.scalar_type()), grad_offset, grad_mask,
          grad_bias};
}

}  // namespace dcn
