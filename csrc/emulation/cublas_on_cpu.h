// The cuBLAS calls of the ORT CUDA driver (onnx_plugins/src/ops_cuda.cu) for the CPU emulation
// (cuda_on_cpu.h): cublasGemmEx is a reference GEMM that takes cuBLAS's arguments in cuBLAS's
// order with its meaning — column-major operands, op(A) m x k, op(B) k x n, C m x n, leading
// dimensions in elements, beta = 0 never reads C — and refuses what cuBLAS refuses (negative sizes,
// a leading dimension shorter than its operand's rows). A caller that swaps the transposes, the
// sizes or the leading dimensions gets an error status or a wrong product, as it would on a GPU.
#pragma once

#include <cstdint>

#include "cuda_on_cpu.h"

enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2 };
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_64F = 70 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

struct cublasContext {
  cudaStream_t stream = nullptr;
};
using cublasHandle_t = cublasContext*;

inline cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  *handle = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

namespace dcn::emulation {

// C = alpha op(A) op(B) + beta C in storage type T, accumulated in S.
template <typename T, typename S>
void reference_gemm(bool trans_a, bool trans_b, int m, int n, int k, S alpha, const T* a, int lda,
                    const T* b, int ldb, S beta, T* c, int ldc) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      S sum = S(0);
      for (int l = 0; l < k; ++l) {
        const S x = S(trans_a ? a[l + int64_t(i) * lda] : a[i + int64_t(l) * lda]);
        const S y = S(trans_b ? b[j + int64_t(l) * ldb] : b[l + int64_t(j) * ldb]);
        sum += x * y;
      }
      T& out = c[i + int64_t(j) * ldc];
      out = T(beta == S(0) ? alpha * sum : alpha * sum + beta * S(out));
    }
  }
}

}  // namespace dcn::emulation

inline cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                   cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                   const void* A, cudaDataType_t Atype, int lda, const void* B,
                                   cudaDataType_t Btype, int ldb, const void* beta, void* C,
                                   cudaDataType_t Ctype, int ldc, cublasComputeType_t compute,
                                   cublasGemmAlgo_t) {
  using dcn::emulation::reference_gemm;
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
  const auto at_least = [](int ld, int rows) { return ld >= (rows > 1 ? rows : 1); };
  if (m < 0 || n < 0 || k < 0 || !at_least(lda, ta ? k : m) || !at_least(ldb, tb ? n : k) ||
      !at_least(ldc, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (Atype != Btype || Atype != Ctype) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  if (compute == CUBLAS_COMPUTE_32F && Atype == CUDA_R_32F) {
    reference_gemm(ta, tb, m, n, k, *static_cast<const float*>(alpha), static_cast<const float*>(A),
                   lda, static_cast<const float*>(B), ldb, *static_cast<const float*>(beta),
                   static_cast<float*>(C), ldc);
  } else if (compute == CUBLAS_COMPUTE_32F && Atype == CUDA_R_16F) {
    reference_gemm(ta, tb, m, n, k, *static_cast<const float*>(alpha),
                   static_cast<const __half*>(A), lda, static_cast<const __half*>(B), ldb,
                   *static_cast<const float*>(beta), static_cast<__half*>(C), ldc);
  } else if (compute == CUBLAS_COMPUTE_64F && Atype == CUDA_R_64F) {
    reference_gemm(ta, tb, m, n, k, *static_cast<const double*>(alpha),
                   static_cast<const double*>(A), lda, static_cast<const double*>(B), ldb,
                   *static_cast<const double*>(beta), static_cast<double*>(C), ldc);
  } else {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
