// Autograd for the dcn ops: each forward saves its inputs and its backward calls the matching
// backward op, so gradients work from Python, TorchScript and C++ alike.
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>

#include "op_handles.h"

namespace dcn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::optional<at::Tensor> defined_or_none(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

class DeformConv2dFunction : public torch::autograd::Function<DeformConv2dFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& offset, const std::optional<at::Tensor>& mask,
                            const std::optional<at::Tensor>& bias, int64_t sh, int64_t sw,
                            int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups,
                            int64_t offset_groups) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = typed_op<DeformConvFn>("dcn::deform_conv2d");
    ctx->save_for_backward(
        {input, weight, offset, mask.value_or(at::Tensor()), bias.value_or(at::Tensor())});
    ctx->saved_data["params"] = std::vector<int64_t>{sh, sw, ph, pw, dh, dw, groups, offset_groups};
    return op.call(input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups,
                   offset_groups);
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grads) {
    static auto op = typed_op<DeformConvBackwardFn>("dcn::_deform_conv2d_backward");
    const auto saved = ctx->get_saved_variables();
    const auto p = ctx->saved_data["params"].toIntVector();
    const auto mask = defined_or_none(saved[3]), bias = defined_or_none(saved[4]);
    auto [gi, gw, goff, gmask, gbias] = op.call(grads[0], saved[0], saved[1], saved[2], mask, bias,
                                                p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]);
    return {gi,
            gw,
            goff,
            mask ? gmask : at::Tensor(),
            bias ? gbias : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

class DeformRoIPoolFunction : public torch::autograd::Function<DeformRoIPoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& rois,
                            const std::optional<at::Tensor>& offset, int64_t pooled_h,
                            int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                            double gamma, bool aligned, bool position_sensitive) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto plain = typed_op<RoIPoolFn>("dcn::deform_roi_pool");
    static auto ps = typed_op<RoIPoolFn>("dcn::ps_deform_roi_pool");
    ctx->save_for_backward({input, rois, offset.value_or(at::Tensor())});
    ctx->saved_data["pooled_h"] = pooled_h;
    ctx->saved_data["pooled_w"] = pooled_w;
    ctx->saved_data["spatial_scale"] = spatial_scale;
    ctx->saved_data["sampling_ratio"] = sampling_ratio;
    ctx->saved_data["gamma"] = gamma;
    ctx->saved_data["aligned"] = aligned;
    ctx->saved_data["position_sensitive"] = position_sensitive;
    return (position_sensitive ? ps : plain)
        .call(input, rois, offset, pooled_h, pooled_w, spatial_scale, sampling_ratio, gamma,
              aligned);
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grads) {
    static auto op = typed_op<RoIPoolBackwardFn>("dcn::_deform_roi_pool_backward");
    const auto saved = ctx->get_saved_variables();
    const auto offset = defined_or_none(saved[2]);
    auto& d = ctx->saved_data;
    auto [gi, goff] =
        op.call(grads[0], saved[0], saved[1], offset, d["pooled_h"].toInt(), d["pooled_w"].toInt(),
                d["spatial_scale"].toDouble(), d["sampling_ratio"].toInt(), d["gamma"].toDouble(),
                d["aligned"].toBool(), d["position_sensitive"].toBool());
    return {gi,           at::Tensor(), offset ? goff : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor deform_conv2d_autograd(const at::Tensor& input, const at::Tensor& weight,
                                  const at::Tensor& offset, const std::optional<at::Tensor>& mask,
                                  const std::optional<at::Tensor>& bias, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups,
                                  int64_t offset_groups) {
  return DeformConv2dFunction::apply(input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw,
                                     groups, offset_groups);
}

at::Tensor deform_roi_pool_autograd(const at::Tensor& input, const at::Tensor& rois,
                                    const std::optional<at::Tensor>& offset, int64_t pooled_h,
                                    int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                                    double gamma, bool aligned) {
  return DeformRoIPoolFunction::apply(input, rois, offset, pooled_h, pooled_w, spatial_scale,
                                      sampling_ratio, gamma, aligned, false);
}

at::Tensor ps_deform_roi_pool_autograd(const at::Tensor& input, const at::Tensor& rois,
                                       const std::optional<at::Tensor>& offset, int64_t pooled_h,
                                       int64_t pooled_w, double spatial_scale,
                                       int64_t sampling_ratio, double gamma, bool aligned) {
  return DeformRoIPoolFunction::apply(input, rois, offset, pooled_h, pooled_w, spatial_scale,
                                      sampling_ratio, gamma, aligned, true);
}

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, Autograd, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_autograd);
  m.impl("deform_roi_pool", &dcn::deform_roi_pool_autograd);
  m.impl("ps_deform_roi_pool", &dcn::ps_deform_roi_pool_autograd);
}
