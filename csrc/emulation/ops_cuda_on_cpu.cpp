// torch.ops.dcn_cuda_on_cpu: the dcn ops with the CUDA kernels of csrc/torch/*_cuda.cu, compiled
// by g++ over cuda_on_cpu.h and registered as CPU kernels (by those files), so that tests can run
// them on the CPU beside torch.ops.dcn. No autograd: tests call the backward ops directly. Also
// the reference cublasGemmEx (cublas_on_cpu.h), so that tests can pin it to cuBLAS's semantics.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../torch/op_schemas.h"
#include "cublas_on_cpu.h"

namespace {

// cublasGemmEx in float32 on the storage of contiguous float32 tensors; returns its status.
int64_t cublas_gemm_ex(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, bool trans_a,
                       bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                       int64_t ldc, double alpha, double beta) {
  for (const at::Tensor& t : {a, b, c}) {
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(),
                "_cublas_gemm_ex: float32 contiguous tensors only");
  }
  // Column-major operands of ld x columns entries (the checks of the bounds are cuBLAS's own).
  TORCH_CHECK(a.numel() >= lda * (trans_a ? m : k) && b.numel() >= ldb * (trans_b ? k : n) &&
                  c.numel() >= ldc * n,
              "_cublas_gemm_ex: a tensor is smaller than its leading dimension x columns");
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    cublasCreate(&h);
    return h;
  }();
  const float al = static_cast<float>(alpha), be = static_cast<float>(beta);
  return cublasGemmEx(handle, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                      trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, int(m), int(n), int(k), &al,
                      a.data_ptr<float>(), CUDA_R_32F, int(lda), b.data_ptr<float>(), CUDA_R_32F,
                      int(ldb), &be, c.data_ptr<float>(), CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

}  // namespace

TORCH_LIBRARY(dcn_cuda_on_cpu, m) {
  dcn::define_op_schemas(m);
  m.def(
      "_cublas_gemm_ex(Tensor a, Tensor b, Tensor(c!) c, bool trans_a, bool trans_b, int m, "
      "int n, int k, int lda, int ldb, int ldc, float alpha, float beta) -> int",
      &cublas_gemm_ex);
}
