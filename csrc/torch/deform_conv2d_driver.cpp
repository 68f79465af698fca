// Device-agnostic part of deformable convolution: argument checks and the im2col + GEMM driver.
#include "deform_conv2d_driver.h"

#include <ATen/OpMathType.h>
#include <ATen/record_function.h>

#include "../common/column_plan.h"
#include "../common/shape_checks.h"
#include "tensor_args.h"

namespace dcn {
namespace {

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
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "deform_conv2d: input must be a floating-point tensor, got ", input.scalar_type());
  check_same(input, weight, "weight");
  check_same(input, offset, "offset");
  if (mask) check_same(input, *mask, "mask");
  if (bias) check_same(input, *bias, "bias");
  const Shape mask_shape = mask ? mask->sizes().vec() : Shape();
  const Shape bias_shape = bias ? bias->sizes().vec() : Shape();
  DeformConvParams p;
  p.stride_h = stride_h;
  p.stride_w = stride_w;
  p.pad_top = p.pad_bottom = pad_h;
  p.pad_left = p.pad_right = pad_w;
  p.dilation_h = dilation_h;
  p.dilation_w = dilation_w;
  p.groups = groups;
  p.offset_groups = offset_groups;
  DeformConvShape s;
  const std::string error =
      check_deform_conv_shapes(input.sizes().vec(), weight.sizes().vec(), offset.sizes().vec(),
                               mask ? &mask_shape : nullptr, bias ? &bias_shape : nullptr, p, &s);
  TORCH_CHECK(error.empty(), "deform_conv2d: ", error);
  return s;
}

namespace {

// The [Q, C*K] column rows as the channels-last image [1, C*K, 1, Q] of a 1x1 convolution, whose
// GEMM (oneDNN on the CPU, cuDNN on the GPU) is the deformable convolution's GEMM.
at::Tensor rows_as_image(const at::Tensor& rows) {
  return rows.view({1, 1, rows.size(0), rows.size(1)}).permute({0, 3, 1, 2});
}

// Inverse of rows_as_image for the 1x1 convolution's output [1, C', 1, Q]: [Q, C'] rows.
at::Tensor image_as_rows(const at::Tensor& image) {
  return image.permute({0, 2, 3, 1}).reshape({image.size(3), image.size(1)});
}

// Weight [C_out, C/groups, kh, kw] in column order (csrc/common/column_plan.h):
// [C_out, kh*kw*(C/groups), 1, 1].
at::Tensor column_weight(const DeformColumnKernels& kernels, const DeformConvShape& s,
                         const at::Tensor& weight) {
  const WeightTranspose t = column_weight_transpose(s, weight.size(0));
  return kernels.transpose(weight.contiguous().view({t.batch, t.rows, t.cols}))
      .view({weight.size(0), -1, 1, 1});
}

// The GEMM rows [Q, C*K] x weight^T as the 1x1 convolution of rows_as_image(rows) with the
// column weight [C', C*K/groups, 1, 1]: [1, C', 1, Q]. On CUDA, float32 stays float32 unless the
// user allows TF32 for matmuls (torch.backends.cuda.matmul.allow_tf32, or
// torch.set_float32_matmul_precision("high")): our op is a GEMM like torchvision's
// deform_conv2d, which follows that switch, not cuDNN's (on by default).
at::Tensor column_gemm(const at::Tensor& rows_image, const at::Tensor& w,
                       const std::optional<at::Tensor>& bias, int64_t groups) {
  if (!rows_image.is_cuda()) {
    return at::conv2d(rows_image, w, bias, at::IntArrayRef{1}, at::IntArrayRef{0},
                      at::IntArrayRef{1}, groups);
  }
  const at::Context& ctx = at::globalContext();
  return at::_convolution(rows_image, w, bias, {1, 1}, {0, 0}, {1, 1}, /*transposed=*/false, {0, 0},
                          groups, ctx.benchmarkCuDNN(),
                          ctx.deterministicCuDNN() || ctx.deterministicAlgorithms(),
                          ctx.userEnabledCuDNN(), /*allow_tf32=*/ctx.allowTF32CuBLAS());
}

// [N, C, H, W] -> contiguous [N, H, W, C].
at::Tensor to_channels_last(const DeformColumnKernels& kernels, const at::Tensor& t) {
  if (t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return t.permute({0, 2, 3, 1});
  }
  return kernels.transpose(t.contiguous().view({t.size(0), t.size(1), t.size(2) * t.size(3)}))
      .view({t.size(0), t.size(2), t.size(3), t.size(1)});
}

// Builds the column buffer chunk by chunk as the plan says (bounded memory) and calls
// fn(j0, q, col) with the [q, C*K] columns of global output positions j0 .. j0 + q - 1.
template <typename Fn>
void for_each_column_chunk(const DeformColumnKernels& kernels, const DeformConvShape& s,
                           const ColumnPlan& plan, const at::Tensor& image,
                           const at::Tensor& offset, const at::Tensor& mask, const Fn& fn) {
  const at::Tensor buffer = at::empty({plan.buffer_entries()}, image.options());
  plan.for_each_chunk([&](const ColumnChunk& c) {
    at::Tensor col = buffer.narrow(0, 0, c.q * s.column_width()).view({c.q, s.column_width()});
    {
      RECORD_FUNCTION("dcn::im2col", std::vector<c10::IValue>());
      kernels.im2col(image, offset, mask, s, c.j0, col);
    }
    fn(c.j0, c.q, col);
  });
}

}  // namespace

at::Tensor deform_conv2d_forward(const DeformColumnKernels& kernels, const at::Tensor& input,
                                 const at::Tensor& weight, const at::Tensor& offset_,
                                 const std::optional<at::Tensor>& mask_,
                                 const std::optional<at::Tensor>& bias, int64_t stride_h,
                                 int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                                 int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  const DeformConvShape s =
      check_deform_conv2d_args(input, weight, offset_, mask_, bias, stride_h, stride_w, pad_h,
                               pad_w, dilation_h, dilation_w, groups, offset_groups);
  const at::Tensor image = to_channels_last(kernels, input);
  const at::Tensor offset = offset_.contiguous(), mask = contiguous_or_undefined(mask_);
  const at::Tensor w = column_weight(kernels, s, weight);
  const int64_t c_out = weight.size(0), total = s.batch * s.out_size();
  const ColumnPlan plan(s, c_out, /*per_image=*/false);
  at::Tensor out_rows;  // [N * out_h * out_w, C_out]
  for_each_column_chunk(
      kernels, s, plan, image, offset, mask, [&](int64_t j0, int64_t q, const at::Tensor& col) {
        const at::Tensor rows = image_as_rows(column_gemm(rows_as_image(col), w, bias, groups));
        if (q == total) {
          out_rows = rows;
        } else {
          if (!out_rows.defined()) out_rows = at::empty({total, c_out}, input.options());
          out_rows.narrow(0, j0, q).copy_(rows);
        }
      });
  if (!out_rows.defined()) out_rows = at::empty({total, c_out}, input.options());
  return kernels.transpose(out_rows.view({s.batch, s.out_size(), c_out}))
      .view({s.batch, c_out, s.out_h, s.out_w});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward(
    const DeformColumnKernels& kernels, const at::Tensor& grad_out, const at::Tensor& input,
    const at::Tensor& weight, const at::Tensor& offset_, const std::optional<at::Tensor>& mask_,
    const std::optional<at::Tensor>& bias, int64_t stride_h, int64_t stride_w, int64_t pad_h,
    int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  const DeformConvShape s =
      check_deform_conv2d_args(input, weight, offset_, mask_, bias, stride_h, stride_w, pad_h,
                               pad_w, dilation_h, dilation_w, groups, offset_groups);
  const int64_t c_out = weight.size(0), total = s.batch * s.out_size();
  const std::vector<int64_t> want_grad = {s.batch, c_out, s.out_h, s.out_w};
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(want_grad),
              "deform_conv2d backward: grad_output must be ", shape_str(want_grad), ", got ",
              shape_str(grad_out.sizes()));
  check_same(input, grad_out, "grad_output");

  const at::Tensor image = to_channels_last(kernels, input);
  const at::Tensor offset = offset_.contiguous(), mask = contiguous_or_undefined(mask_);
  const ColumnPlan plan(s, c_out, /*per_image=*/false);
  const int64_t c_out_g = plan.c_out_g, rows_g = plan.rows_g;
  const at::Tensor w_t = column_weight(kernels, s, weight)
                             .view({groups, c_out_g, rows_g})
                             .transpose(1, 2)
                             .reshape({s.column_width(), c_out_g, 1, 1})
                             .contiguous();
  const at::Tensor grad_rows = to_channels_last(kernels, grad_out).view({total, c_out});
  const auto acc = input.options().dtype(at::toOpMathType(input.scalar_type()));

  at::Tensor grad_image = at::zeros(image.sizes(), acc);
  at::Tensor grad_w = at::zeros({groups, c_out_g, rows_g}, acc);  // column order
  at::Tensor grad_offset = at::empty_like(offset);
  at::Tensor grad_mask = mask.defined() ? at::empty_like(mask) : at::Tensor();

  for_each_column_chunk(
      kernels, s, plan, image, offset, mask, [&](int64_t j0, int64_t q, const at::Tensor& col) {
        const at::Tensor grad_rows_q = grad_rows.narrow(0, j0, q);
        // grad_col = grad_rows x W (a 1x1 convolution with the transposed weight), and
        // grad_W += grad_rows^T x col per group. (Faster here than at::convolution_backward.)
        const at::Tensor grad_col =
            image_as_rows(column_gemm(rows_as_image(grad_rows_q), w_t, {}, groups)).contiguous();
        for (int64_t g = 0; g < groups; ++g) {
          grad_w.select(0, g).add_(at::mm(grad_rows_q.narrow(1, plan.out_channel(g), c_out_g).t(),
                                          col.narrow(1, plan.column_offset(g), rows_g)));
        }
        {
          RECORD_FUNCTION("dcn::col2im", std::vector<c10::IValue>());
          kernels.col2im(grad_col, offset, mask, s, j0, grad_image);
        }
        {
          RECORD_FUNCTION("dcn::coord_grad", std::vector<c10::IValue>());
          kernels.coord_grad(grad_col, image, offset, mask, s, j0, grad_offset, grad_mask);
        }
      });
  const auto dtype = input.scalar_type();
  const at::Tensor grad_input =
      kernels.transpose(grad_image.view({s.batch, s.plane_size(), s.channels}))
          .view(input.sizes())
          .to(dtype);
  const at::Tensor grad_weight =
      grad_w.view({c_out, s.kernel_h, s.kernel_w, s.channels_per_group()})
          .permute({0, 3, 1, 2})
          .contiguous()
          .to(dtype);
  at::Tensor grad_bias = bias ? grad_out.sum({0, 2, 3}, false, at::toOpMathType(dtype)).to(dtype)
                              : at::empty({0}, input.options());
  if (!grad_mask.defined()) grad_mask = at::empty({0}, input.options());
  return {grad_input, grad_weight, grad_offset, grad_mask, grad_bias};
}

}  // namespace dcn
