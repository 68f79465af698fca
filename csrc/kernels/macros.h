// Portability layer for the shared kernel math: every function in csrc/kernels/ is compiled by g++
// for the CPU loops and ONNX Runtime CPU kernels, and by nvcc for the CUDA kernels.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DCN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DCN_HOST_DEVICE inline
#endif

// Marks a loop over channels as safe to vectorise (no loop-carried dependences, no aliasing
// between its stores and loads) where the host compiler understands OpenMP SIMD (-fopenmp, or
// -fopenmp-simd with DCN_OPENMP_SIMD defined).
#if (defined(_OPENMP) || defined(DCN_OPENMP_SIMD)) && !defined(__CUDA_ARCH__)
#define DCN_SIMD _Pragma("omp simd")
#else
#define DCN_SIMD
#endif

namespace dcn {

DCN_HOST_DEVICE float floor_(float v) { return floorf(v); }
DCN_HOST_DEVICE double floor_(double v) { return floor(v); }
DCN_HOST_DEVICE float ceil_(float v) { return ceilf(v); }
DCN_HOST_DEVICE double ceil_(double v) { return ceil(v); }

}  // namespace dcn
