// Typed handles of the dcn ops for the kernels that call back into the dispatcher (autograd,
// autocast): the C++ signatures of the schemas in ops.cpp.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace dcn {

template <typename Fn>
auto typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

using DeformConvFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                int64_t);
using DeformConvBackwardFn = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t);
using RoIPoolFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                             int64_t, int64_t, double, int64_t, double, bool);
using RoIPoolBackwardFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                             const at::Tensor&,
                                                             const std::optional<at::Tensor>&,
                                                             int64_t, int64_t, double, int64_t,
                                                             double, bool, bool);

}  // namespace dcn
