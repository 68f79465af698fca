"""Deformable RoI pooling (plain and position-sensitive) against the pure-PyTorch reference,
torchvision's RoIAlign / PSRoIAlign, and gradcheck."""
import pytest
import torch
import torchvision
from roi_reference import deform_roi_pool_ref

from model import ops

OPS = {False: ops.deform_roi_pool, True: ops.ps_deform_roi_pool}


def make(position_sensitive, k_rois=5, out=(3, 2), dtype=torch.float64):
    c = 2 * out[0] * out[1] if position_sensitive else 3
    x = torch.randn(2, c, 9, 11, dtype=dtype)
    boxes = torch.tensor([
        [0, 2.0, 3.0, 15.0, 12.0],
        [1, -6.0, -4.0, 8.0, 9.0],     # partly outside (top-left)
        [1, 14.0, 10.0, 30.0, 25.0],   # partly outside (bottom-right)
        [0, 5.0, 5.0, 5.5, 6.0],       # tiny
        [1, 0.0, 0.0, 21.0, 17.0],     # whole map
    ], dtype=dtype)[:k_rois]
    offset = torch.randn(k_rois, 2, *out, dtype=dtype)
    return x, boxes, offset


@pytest.mark.parametrize("position_sensitive", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0, 1])
@pytest.mark.parametrize("aligned", [True, False])
def test_matches_reference_forward_and_gradients(position_sensitive, sampling_ratio, aligned):
    x, rois, offset = make(position_sensitive)
    x.requires_grad_()
    offset.requires_grad_()
    args = ((3, 2), 0.5, sampling_ratio, 0.1)
    ours = OPS[position_sensitive](x, rois, offset, *args, aligned=aligned)
    ref = deform_roi_pool_ref(x, rois, offset, *args, position_sensitive=position_sensitive,
                              aligned=aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (x, offset), g),
                    torch.autograd.grad(ref, (x, offset), g)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_zero_offsets_equal_roi_align():
    x, rois, offset = make(False)
    for off in (None, torch.zeros_like(offset)):
        ours = ops.deform_roi_pool(x, rois, off, (3, 2), 0.5, 2)
        ref = torchvision.ops.roi_align(x, rois, (3, 2), 0.5, 2, aligned=True)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    adaptive = ops.deform_roi_pool(x, rois, None, (3, 2), 0.5, 0)
    torch.testing.assert_close(
        adaptive, torchvision.ops.roi_align(x, rois, (3, 2), 0.5, 0, aligned=True))


def test_zero_offsets_unaligned_equal_torchvision_legacy_roi_align():
    x, rois, offset = make(False)
    for sampling_ratio in (2, 0):
        ours = ops.deform_roi_pool(x, rois, torch.zeros_like(offset), (3, 2), 0.5, sampling_ratio,
                                   aligned=False)
        ref = torchvision.ops.roi_align(x, rois, (3, 2), 0.5, sampling_ratio, aligned=False)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_zero_offsets_equal_ps_roi_align():
    x, rois, offset = make(True)
    ours = ops.ps_deform_roi_pool(x, rois, torch.zeros_like(offset), (3, 2), 0.5, 2)
    ref = torchvision.ops.ps_roi_align(x, rois, (3, 2), 0.5, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_gamma_scales_the_shift():
    x, rois, offset = make(False)
    a = ops.deform_roi_pool(x, rois, offset * 2, (3, 2), 0.5, 2, gamma=0.05)
    b = ops.deform_roi_pool(x, rois, offset, (3, 2), 0.5, 2, gamma=0.1)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("position_sensitive", [False, True])
def test_empty_roi_set(position_sensitive):
    x, rois, offset = make(position_sensitive)
    x.requires_grad_()
    off = offset[:0].requires_grad_()
    out = OPS[position_sensitive](x, rois[:0], off, (3, 2), 0.5, 2)
    assert out.shape[0] == 0
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("position_sensitive", [False, True])
def test_gradcheck(position_sensitive):
    x, rois, offset = make(position_sensitive, k_rois=3, out=(2, 2))
    offset = (offset * 0.3).requires_grad_()
    x.requires_grad_()
    fn = lambda xx, oo: OPS[position_sensitive](xx, rois, oo, (2, 2), 0.5, 2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, offset), eps=1e-6, atol=1e-6)


def test_float32_and_channels_last():
    x, rois, offset = make(False)
    ref = ops.deform_roi_pool(x, rois, offset, (3, 2), 0.5, 2)
    out = ops.deform_roi_pool(x.float().contiguous(memory_format=torch.channels_last),
                              rois.float(), offset.float(), (3, 2), 0.5, 2)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_huge_roi_with_adaptive_sampling_terminates():
    x, _, _ = make(False)
    rois = torch.tensor([[0, -1e9, -1e9, 1e9, 1e9], [0, float("nan"), 0, 5, 5]], dtype=x.dtype)
    out = ops.deform_roi_pool(x, rois, None, (2, 2), 1.0, 0)
    assert out.shape == (2, 3, 2, 2)
    assert torch.isfinite(out).all()
