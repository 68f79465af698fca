// What the torch CUDA kernel files take from the CUDA API, under three names: the device guard,
// the current stream and the launch check; and the op library and dispatch key they register
// under. With -DDCN_CUDA_ON_CPU (csrc/emulation) the same files run their kernels on the CPU and
// register them as torch.ops.dcn_cuda_on_cpu's CPU kernels, beside the real CPU ones.
#pragma once

#include <ATen/ATen.h>

#include "../cuda/launch.cuh"

#ifdef DCN_CUDA_ON_CPU

#define DCN_CUDA_OPS dcn_cuda_on_cpu
#define DCN_CUDA_KEY CPU

namespace dcn {
struct CudaDeviceGuard {
  explicit CudaDeviceGuard(const c10::Device&) {}
};
inline cudaStream_t current_stream() { return nullptr; }
inline void check_launch() {
  const cudaError_t e = cudaGetLastError();
  TORCH_CHECK(e == cudaSuccess, "CUDA kernel launch failed: ", cudaGetErrorString(e));
}
}  // namespace dcn

#else

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#define DCN_CUDA_OPS dcn
#define DCN_CUDA_KEY CUDA

namespace dcn {
using CudaDeviceGuard = c10::cuda::CUDAGuard;
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }
inline void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }
}  // namespace dcn

#endif
