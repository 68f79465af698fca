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

#include "../cpu/isa.h"
#include "deform_conv2d_driver.h"
#include "tensor_args.h"

#define DCN_ISA_FILE "../torch/deform_conv2d_cpu_loops.inc"
#include "../cpu/isa_variants.inc"

namespace dcn {
namespace {

const DeformColumnKernels& cpu_kernels() {
  static const DeformColumnKernels& best = DCN_PICK_ISA(kKernels);
  return best;
}

DCN_DEFINE_DEFORM_CONV2D_ENTRY_POINTS(cpu, cpu_kernels())

}  // namespace
}  // namespace dcn

TORCH_LIBRARY_IMPL(dcn, CPU, m) {
  m.impl("deform_conv2d", &dcn::deform_conv2d_cpu);
  m.impl("_deform_conv2d_backward", &dcn::deform_conv2d_backward_cpu);
}
