"""The reference cublasGemmEx the CPU emulation gives the ORT CUDA driver
(csrc/emulation/cublas_on_cpu.h) means what cuBLAS documents: C = alpha op(A) op(B) + beta C on
column-major storage with leading dimensions, beta = 0 never reading C, and an error status for
the arguments cuBLAS refuses. Swapped arguments in the driver then fail as they would on a GPU."""
import pytest
import torch
from cuda_on_cpu_build import load_torch_ops

CUDA_ON_CPU = load_torch_ops()
INVALID_VALUE = 7


def column_major(storage, rows, cols, ld):
    """The rows x cols matrix stored column by column, ld entries apart."""
    return storage.view(cols, ld)[:, :rows].t()


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_reference_gemm_is_column_major_with_leading_dimensions(trans_a, trans_b):
    m, n, k = 5, 3, 4
    rows_a, cols_a = (k, m) if trans_a else (m, k)
    rows_b, cols_b = (n, k) if trans_b else (k, n)
    lda, ldb, ldc = rows_a + 2, rows_b + 1, m + 3
    a, b, c = torch.randn(lda * cols_a), torch.randn(ldb * cols_b), torch.randn(ldc * n)
    before = c.clone()
    op_a = column_major(a, rows_a, cols_a, lda)
    op_b = column_major(b, rows_b, cols_b, ldb)
    op_a, op_b = (op_a.t() if trans_a else op_a), (op_b.t() if trans_b else op_b)
    status = CUDA_ON_CPU._cublas_gemm_ex(a, b, c, trans_a, trans_b, m, n, k, lda, ldb, ldc, 0.5,
                                         2.0)
    assert status == 0
    want = 0.5 * op_a @ op_b + 2.0 * column_major(before, m, n, ldc)
    torch.testing.assert_close(column_major(c, m, n, ldc), want)
    padding = c.view(n, ldc)[:, m:]
    assert torch.equal(padding, before.view(n, ldc)[:, m:]), "wrote past m rows of C"


def test_beta_zero_never_reads_c():
    a, b = torch.randn(6), torch.randn(6)
    c = torch.full((4,), float("nan"))
    assert CUDA_ON_CPU._cublas_gemm_ex(a, b, c, False, False, 2, 2, 3, 2, 3, 2, 1.0, 0.0) == 0
    want = a.view(3, 2).t() @ b.view(2, 3).t()
    torch.testing.assert_close(c.view(2, 2).t(), want)


@pytest.mark.parametrize("m,n,k,lda,ldb,ldc", [
    (4, 3, 2, 3, 2, 4),   # lda < m for op(A) = A
    (4, 3, 2, 4, 1, 4),   # ldb < k for op(B) = B
    (4, 3, 2, 4, 2, 3),   # ldc < m
    (-1, 3, 2, 4, 2, 4),  # negative size
])
def test_refuses_what_cublas_refuses_and_leaves_c(m, n, k, lda, ldb, ldc):
    a, b, c = torch.randn(64), torch.randn(64), torch.randn(64)
    before = c.clone()
    assert CUDA_ON_CPU._cublas_gemm_ex(a, b, c, False, False, m, n, k, lda, ldb, ldc, 1.0,
                                       1.0) == INVALID_VALUE
    assert torch.equal(c, before)


def test_a_transposed_checks_lda_against_k():
    """op(A) = A^T is m x k from a k x m A: lda must cover k rows, not m."""
    a, b, c = torch.randn(64), torch.randn(64), torch.randn(64)
    assert CUDA_ON_CPU._cublas_gemm_ex(a, b, c, True, False, 2, 2, 5, 2, 5, 2, 1.0, 0.0) == \
        INVALID_VALUE
    assert CUDA_ON_CPU._cublas_gemm_ex(a, b, c, True, False, 2, 2, 5, 5, 5, 2, 1.0, 0.0) == 0
