// Launch helpers shared by every CUDA kernel file (framework-free): 1-D grid-stride loops and
// the atomic accumulation used by the scatters.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace dcn {

constexpr int kCudaThreads = 256;

inline unsigned cuda_blocks(int64_t work) {
  const int64_t blocks = (work + kCudaThreads - 1) / kCudaThreads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

#define DCN_CUDA_KERNEL_LOOP(i, n)                                          \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

template <typename A>
struct AtomicAdd {
  __device__ void operator()(A* p, A v) const { atomicAdd(p, v); }
};

}  // namespace dcn
