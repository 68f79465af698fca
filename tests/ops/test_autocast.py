"""Autocast (torch.autocast) for the dcn ops: every floating-point argument is cast to float32
before dispatch, so a low-precision activation may meet float32 weights; the result comes back
in the input's dtype and gradients reach each tensor in its own dtype."""
import pytest
import torch

from model import ops

# bf16 keeps 8 significant bits: the only error is rounding the inputs and the result.
BF16 = dict(rtol=2e-2, atol=2e-2)


def conv_args(device, n=2, c=8, c_out=6, size=9):
    x = torch.randn(n, c, size, size, device=device)
    w = torch.randn(c_out, c, 3, 3, device=device) * 0.1
    offset = torch.randn(n, 18, size, size, device=device)
    mask = torch.rand(n, 9, size, size, device=device)
    bias = torch.randn(c_out, device=device)
    return x, w, offset, mask, bias


def roi_args(device, position_sensitive):
    c = 2 * 3 * 3 if position_sensitive else 4
    x = torch.randn(2, c, 12, 12, device=device)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 10.0], [1, 0.0, 0.0, 12.0, 7.0]], device=device)
    offset = torch.randn(2, 2, 3, 3, device=device) * 0.1
    return x, rois, offset


def check_deform_conv2d(device_type, dtype):
    x, w, offset, mask, bias = conv_args(device_type)
    want = ops.deform_conv2d(x, offset, w, bias, padding=(1, 1), mask=mask)
    low = x.to(dtype).requires_grad_()
    w.requires_grad_()
    with torch.autocast(device_type, dtype=dtype):
        got = ops.deform_conv2d(low, offset, w, bias, padding=(1, 1), mask=mask)
    assert got.dtype == dtype  # the input's dtype
    torch.testing.assert_close(got.float(), want, **BF16)
    got.float().sum().backward()
    assert low.grad.dtype == dtype and w.grad.dtype == torch.float32


def check_roi_pool(device_type, dtype, position_sensitive):
    op = ops.ps_deform_roi_pool if position_sensitive else ops.deform_roi_pool
    x, rois, offset = roi_args(device_type, position_sensitive)
    want = op(x, rois, offset, (3, 3), 0.5, 2, 0.1)
    low = x.to(dtype).requires_grad_()
    with torch.autocast(device_type, dtype=dtype):
        got = op(low, rois, offset.to(dtype), (3, 3), 0.5, 2, 0.1)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **BF16)
    got.float().sum().backward()
    assert low.grad.dtype == dtype


def test_deform_conv2d_bf16_activation_meets_fp32_weight_under_cpu_autocast():
    check_deform_conv2d("cpu", torch.bfloat16)


def test_deform_conv2d_without_autocast_still_rejects_mixed_dtypes():
    x, w, offset, _, _ = conv_args("cpu")
    with pytest.raises(RuntimeError, match="one dtype"):
        ops.deform_conv2d(x.bfloat16(), offset, w, padding=(1, 1))


def test_fp32_inputs_stay_fp32_under_autocast():
    x, w, offset, _, _ = conv_args("cpu")
    want = ops.deform_conv2d(x, offset, w, padding=(1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ops.deform_conv2d(x, offset, w, padding=(1, 1))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("position_sensitive", [False, True])
def test_roi_pool_bf16_input_under_cpu_autocast(position_sensitive):
    check_roi_pool("cpu", torch.bfloat16, position_sensitive)


@pytest.mark.cuda
def test_deform_conv2d_fp16_activation_meets_fp32_weight_under_cuda_autocast():
    check_deform_conv2d("cuda", torch.float16)


@pytest.mark.cuda
@pytest.mark.parametrize("position_sensitive", [False, True])
def test_roi_pool_fp16_input_under_cuda_autocast(position_sensitive):
    check_roi_pool("cuda", torch.float16, position_sensitive)
