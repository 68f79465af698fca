// What the ATen entry points share to check their tensors and hand them to the framework-free
// loops and kernels: argument checks, raw pointers of optional tensors, and at::parallel_for as
// the CPU loops' parallel policy.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <optional>
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
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but input has dtype ", ref.scalar_type(), "; all tensors must have one dtype");
}

// Data of an optional (possibly undefined) tensor: null when undefined.
template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<std::remove_const_t<T>>() : nullptr;
}

// A contiguous copy of an optional tensor; undefined when absent.
inline at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t ? t->contiguous() : at::Tensor();
}

// at::parallel_for as the CPU loops' parallel policy (csrc/cpu).
struct AtenParallel {
  template <typename F>
  void run(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    at::parallel_for(begin, end, grain, f);
  }
};

}  // namespace dcn
