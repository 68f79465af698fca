// The part of CUDA our kernels and drivers use, for g++ on the CPU: the function qualifiers, the
// thread and block indices, atomicAdd, __half, a launcher that runs a kernel over its grid, and
// the runtime calls of the drivers. With it (and -DDCN_CUDA_ON_CPU) the very sources nvcc compiles
// — csrc/cuda/*.cuh, csrc/torch/*_cuda.cu, onnx_plugins/src/ops_cuda.cu — compile as C++ and run
// here; host memory stands in for device memory and every launch finishes before it returns.
//
// This holds because every kernel is a 1-D grid-stride loop (DCN_CUDA_KERNEL_LOOP) that neither
// shares memory nor synchronises within a block: a block's threads can run one after another.
// Each thread writes only the outputs it owns, or adds through atomicAdd, which is a real atomic
// here, so blocks run in parallel on the host's cores.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#define __global__ inline
#define __device__ inline
#define __host__
#define __forceinline__

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// The running emulated thread's indices: thread_local, since blocks run on several host threads.
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value, std::memory_order_relaxed);
}

// cuda_fp16.h's half: storage only, arithmetic in float (as our kernels do it).
struct __half {
  _Float16 value;
  __half() = default;
  __half(float f) : value(static_cast<_Float16>(f)) {}
  operator float() const { return static_cast<float>(value); }
};
static_assert(sizeof(__half) == 2, "__half must be IEEE binary16 storage");

// ---- the runtime API the drivers call ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
using cudaStream_t = struct CUstream_st*;

namespace dcn::emulation {
// Like CUDA's: per host thread, set by a failed launch, cleared by cudaGetLastError.
inline thread_local cudaError_t last_error = cudaSuccess;
}  // namespace dcn::emulation

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
  }
  return "unknown error";
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = dcn::emulation::last_error;
  dcn::emulation::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                                   cudaStream_t) {
  if (bytes > 0 && (dst == nullptr || src == nullptr)) return cudaErrorInvalidValue;
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// ---- kernel launches ----
namespace dcn::emulation {

// DCN_CUDA_ON_CPU_ORDER=reverse runs each worker's blocks, and each block's threads, last to
// first: a kernel whose result depends on the order threads run in (which CUDA leaves open)
// then gives another result.
inline bool reverse_order() {
  const char* order = std::getenv("DCN_CUDA_ON_CPU_ORDER");
  return order != nullptr && std::strcmp(order, "reverse") == 0;
}

// Runs body() once per thread of a grid of `blocks` x `threads` (1-D), with the indices set as
// CUDA sets them. A configuration CUDA would refuse sets the launch error and runs nothing.
template <typename Body>
void run_grid(unsigned blocks, unsigned threads, const Body& body) {
  if (blocks == 0 || blocks > 0x7fffffffu || threads == 0 || threads > 1024) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  const bool reverse = reverse_order();
  const unsigned workers = std::min(blocks, std::max(1u, std::thread::hardware_concurrency()));
  const auto run_blocks = [&](unsigned lo, unsigned hi) {
    gridDim = dim3{blocks, 1, 1};
    blockDim = dim3{threads, 1, 1};
    for (unsigned b = 0; b < hi - lo; ++b) {
      blockIdx = dim3{reverse ? hi - 1 - b : lo + b, 0, 0};
      for (unsigned t = 0; t < threads; ++t) {
        threadIdx = dim3{reverse ? threads - 1 - t : t, 0, 0};
        body();
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < workers; ++w) {
    pool.emplace_back(run_blocks, uint64_t(blocks) * w / workers,
                      uint64_t(blocks) * (w + 1) / workers);
  }
  run_blocks(0, blocks / workers);
  for (std::thread& t : pool) t.join();
}

}  // namespace dcn::emulation
