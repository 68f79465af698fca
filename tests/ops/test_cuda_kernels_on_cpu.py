"""Every CUDA kernel of the torch ops, run on the CPU against the CPU op: the same .cu sources
compiled by g++ over csrc/emulation/cuda_on_cpu.h (`make test-cuda-cpu` builds them into
build/cuda_on_cpu), launched over the grids the CUDA drivers compute, registered as
torch.ops.dcn_cuda_on_cpu. deform_conv2d forward and its five gradients, deform_roi_pool and
ps_deform_roi_pool forward and backward, in float64 and float32, over the CUDA tests' grids and
the edges: empty inputs, far-out and non-finite offsets, RoIs on and past the border."""
import pytest
import torch
from cuda_on_cpu_build import load_torch_ops
from test_deform_conv2d import GRID, make_case
from test_deform_roi_pool import make

import model.ops  # noqa: F401  (torch.ops.dcn, the CPU op)

CPU, CUDA_ON_CPU = torch.ops.dcn, load_torch_ops()
DTYPES = [torch.float64, torch.float32]


def tolerance(dtype):
    return dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)


def conv_inputs(case, dtype, **kw):
    """(input, weight, offset, mask, bias, the op's 8 int arguments) of a GRID case."""
    x, w, off, mask, bias, geometry = make_case(case, dtype=dtype, **kw)
    ints = [*geometry["stride"], *geometry["padding"], *geometry["dilation"], case[9], case[10]]
    return [x, w, off, mask, bias], ints


def assert_conv_matches_cpu(tensors, ints, dtype):
    """Forward and every gradient (input, weight, offset, mask, bias) of both ops agree."""
    out = CUDA_ON_CPU.deform_conv2d(*tensors, *ints)
    want = CPU.deform_conv2d(*tensors, *ints)
    torch.testing.assert_close(out, want, **tolerance(dtype))
    grad = torch.randn_like(want)
    got = CUDA_ON_CPU._deform_conv2d_backward(grad, *tensors, *ints)
    expected = CPU._deform_conv2d_backward(grad, *tensors, *ints)
    for name, a, b in zip(["input", "weight", "offset", "mask", "bias"], got, expected):
        torch.testing.assert_close(a, b, **tolerance(dtype), msg=lambda m, n=name: f"grad {n}: {m}")
    return out, got


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_mask,with_bias", [(True, True), (False, False)])
@pytest.mark.parametrize("case", GRID)
def test_deform_conv2d_kernels_match_cpu(case, with_mask, with_bias, dtype):
    tensors, ints = conv_inputs(case, dtype, with_mask=with_mask, with_bias=with_bias)
    assert_conv_matches_cpu(tensors, ints, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deform_conv2d_empty_batch(dtype):
    tensors, ints = conv_inputs(GRID[0], dtype)
    tensors = [t[:0] if i in (0, 2, 3) else t for i, t in enumerate(tensors)]
    out, grads = assert_conv_matches_cpu(tensors, ints, dtype)
    assert out.shape == (0, 6, 7, 8) and grads[1].abs().max() == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [1e4, -1e6, 1.0, -1.0, 2.0, float("nan"), float("inf"),
                                   -float("inf")])
def test_deform_conv2d_far_out_border_and_non_finite_offsets(value, dtype):
    """Integer offsets land on pixels and on the border (one-sided derivatives), far-out and
    non-finite ones sample zero; a third of the points keep their random offsets."""
    tensors, ints = conv_inputs(GRID[2], dtype)
    offset = tensors[2]
    offset[:, ::3] = value
    offset[:, 1::6] = -value
    assert_conv_matches_cpu(tensors, ints, dtype)


def test_deform_conv2d_many_column_chunks():
    """N * out_h * out_w * C * K passes one column chunk (2^23 entries): the driver's chunk loop
    runs im2col, col2im and the coordinate gradient at several column offsets j0."""
    case = (2, 64, 8, 96, 96, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    tensors, ints = conv_inputs(case, torch.float32, offset_scale=2.0)
    tensors[1] *= 0.05
    assert_conv_matches_cpu(tensors, ints, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_deform_conv2d_reduced_precision_kernels_match_float64(dtype):
    tensors, ints = conv_inputs(GRID[0], torch.float64, offset_scale=1.0)
    want = CPU.deform_conv2d(*tensors, *ints)
    out = CUDA_ON_CPU.deform_conv2d(*(t.to(dtype) for t in tensors), *ints)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), want, rtol=0.05, atol=0.3)


def roi_arguments(position_sensitive, sampling_ratio=2, aligned=True, dtype=torch.float64):
    x, rois, offset = make(position_sensitive, dtype=dtype)
    return x, rois, offset, [3, 2, 0.5, sampling_ratio, 0.1, aligned]


def assert_roi_pool_matches_cpu(x, rois, offset, args, position_sensitive, dtype):
    name = "ps_deform_roi_pool" if position_sensitive else "deform_roi_pool"
    out = getattr(CUDA_ON_CPU, name)(x, rois, offset, *args)
    want = getattr(CPU, name)(x, rois, offset, *args)
    torch.testing.assert_close(out, want, **tolerance(dtype))
    grad = torch.randn_like(want)
    got = CUDA_ON_CPU._deform_roi_pool_backward(grad, x, rois, offset, *args, position_sensitive)
    expected = CPU._deform_roi_pool_backward(grad, x, rois, offset, *args, position_sensitive)
    for name, a, b in zip(["input", "offset"], got, expected):
        torch.testing.assert_close(a, b, **tolerance(dtype), msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0, 1])
@pytest.mark.parametrize("position_sensitive", [False, True])
def test_roi_pool_kernels_match_cpu(position_sensitive, sampling_ratio, aligned, dtype):
    x, rois, offset, args = roi_arguments(position_sensitive, sampling_ratio, aligned, dtype)
    assert_roi_pool_matches_cpu(x, rois, offset, args, position_sensitive, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("position_sensitive", [False, True])
def test_roi_pool_kernels_without_offset_and_with_border_rois(position_sensitive, dtype):
    """No offset; RoIs on the border, wholly past it, huge with adaptive sampling, and NaN."""
    x, rois, _, args = roi_arguments(position_sensitive, sampling_ratio=0, dtype=dtype)
    edge = torch.tensor([[0, 0.0, 0.0, 22.0, 18.0],      # exactly the map (scale 0.5)
                         [1, 21.0, 17.0, 22.0, 18.0],    # the bottom-right corner pixel
                         [0, 24.0, 20.0, 40.0, 30.0],    # wholly past the bottom-right border
                         [1, -30.0, -30.0, -2.0, -2.0],  # wholly past the top-left border
                         [0, -1e9, -1e9, 1e9, 1e9],      # huge: the adaptive grid is capped
                         [1, float("nan"), 0.0, 5.0, 5.0]], dtype=dtype)
    assert_roi_pool_matches_cpu(x, torch.cat([rois, edge]), None, args, position_sensitive, dtype)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e6])
def test_roi_pool_kernels_with_non_finite_and_far_out_offsets(value):
    x, rois, offset, args = roi_arguments(False)
    offset[0, :, 0, 0] = value
    offset[2, 1] = -value
    assert_roi_pool_matches_cpu(x, rois, offset, args, False, torch.float64)


@pytest.mark.parametrize("position_sensitive", [False, True])
def test_roi_pool_kernels_with_no_rois(position_sensitive):
    x, rois, offset, args = roi_arguments(position_sensitive)
    assert_roi_pool_matches_cpu(x, rois[:0], offset[:0], args, position_sensitive, torch.float64)


def test_results_do_not_depend_on_the_order_threads_run_in(monkeypatch):
    """CUDA runs a grid's threads in no set order: reversed, every kernel gives the same result
    (the scatters' atomic sums up to rounding)."""
    tensors, ints = conv_inputs(GRID[3], torch.float64)
    x, rois, offset, args = roi_arguments(True)

    def everything():
        out = CUDA_ON_CPU.deform_conv2d(*tensors, *ints)
        grads = CUDA_ON_CPU._deform_conv2d_backward(torch.ones_like(out), *tensors, *ints)
        pooled = CUDA_ON_CPU.ps_deform_roi_pool(x, rois, offset, *args)
        roi_grads = CUDA_ON_CPU._deform_roi_pool_backward(torch.ones_like(pooled), x, rois,
                                                          offset, *args, True)
        return [out, *grads, pooled, *roi_grads]

    forward = everything()
    monkeypatch.setenv("DCN_CUDA_ON_CPU_ORDER", "reverse")
    for a, b in zip(everything(), forward):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
