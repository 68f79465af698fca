// CPU column kernels for deformable convolution: parallel loops over the shared math in
// csrc/kernels/deform_im2col.h (in deform_conv2d_cpu_loops.inc). The input is channels-last, so
// every sampling point's taps are computed once and then applied to a contiguous run of channels
// in a SIMD loop; the loops are compiled for baseline x86-64, AVX2 and AVX-512 and the best one
// the CPU supports is picked at load time.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "deform_conv2d.h"

namespace dcn {
// at::parallel_for as the column loops' parallel policy.
struct AtenParallel {
  template <typename F>
  void run(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    at::parallel_for(begin, end, grain, f);
  }
};
}  // namespace dcn

namespace dcn {
namespace cpu_baseline {
#include "deform_conv2d_cpu_loops.inc"
}  // namespace cpu_baseline
}  // namespace dcn

#if defined(__x86_64__) && defined(__GNUC__)
#define DCN_CPU_DISPATCH 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace dcn {
namespace cpu_avx2 {
#include "deform_conv2d_cpu_loops.inc"
}  // namespace cpu_avx2
}  // namespace dcn
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
namespace dcn {
namespace cpu_avx512 {
#include "deform_conv2d_cpu_loops.inc"
}  // namespace cpu_avx512
}  // namespace dcn
#pragma GCC pop_options
#endif

namespace dcn {
namespace {

const DeformColumnKernels& cpu_kernels() {
#ifdef DCN_CPU_DISPATCH
  static const DeformColumnKernels& best = __builtin_cpu_supports("avx512f") &&
                                                   __builtin_cpu_supports("avx512bw") &&
                                                   __builtin_cpu_supports("avx512vl") &&
                                                   __builtin_cpu_supports("avx512dq")
                                               ? cpu_avx512::kKernels
                                           : __builtin_cpu_supports("avx2") &&
                                                   __builtin_cpu_supports("fma")
                                               ? cpu_avx2::kKernels
                                               : cpu_baseline::kKernels;
  return best;
#else
  return cpu_baseline::kKernels;
#endif
}

DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(cpu, cpu_kernels())

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_cpu);
  m.impl("_deform_conv2d_backward", &dcn::deform_conv2d_backward_cpu);
}
