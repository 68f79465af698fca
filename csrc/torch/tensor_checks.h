// Small helpers for the argument checks of the op entry points.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace dcn {

inline std::string shape_str(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// `t` (called `name`) must share `ref`'s device and dtype.
inline void check_same_device_dtype(const char* op, const at::Tensor& ref, const at::Tensor& t,
                                    const char* name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(),
              " but input is on ", ref.device(), "; all tensors must be on one device");
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
              t.scalar_type(), " but input has dtype ", ref.scalar_type(),
              "; all tensors must have one dtype");
}

}  // namespace dcn
