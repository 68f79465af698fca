// Launch helpers shared by every CUDA kernel file (framework-free): 1-D grid-stride loops, the one
// launch function every driver calls, and the atomic accumulation used by the scatters. Compiled
// by nvcc, or by g++ with -DDCN_CUDA_ON_CPU over csrc/emulation/cuda_on_cpu.h (the same grid, run
// on the CPU).
#pragma once

#ifdef DCN_CUDA_ON_CPU
#include "../emulation/cuda_on_cpu.h"
#else
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <cstdint>

namespace dcn {

constexpr int kCudaThreads = 256;

inline unsigned cuda_blocks(int64_t work) {
  const int64_t blocks = (work + kCudaThreads - 1) / kCudaThreads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

// Runs `kernel` over `work` items: cuda_blocks(work) blocks of kCudaThreads threads on `stream`.
// Launch errors are left for cudaGetLastError, as with <<<...>>>.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), int64_t work, cudaStream_t stream, Args... args) {
#ifdef DCN_CUDA_ON_CPU
  (void)stream;
  emulation::run_grid(cuda_blocks(work), kCudaThreads, [&] { kernel(args...); });
#else
  kernel<<<cuda_blocks(work), kCudaThreads, 0, stream>>>(args...);
#endif
}

#define DCN_CUDA_KERNEL_LOOP(i, n)                                          \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

template <typename A>
struct AtomicAdd {
  __device__ void operator()(A* p, A v) const { atomicAdd(p, v); }
};

}  // namespace dcn
