"""Wrong shapes, dtypes and devices raise clear Python errors before any kernel runs."""
import pytest
import torch

from model import ops


def conv_args(**over):
    a = dict(input=torch.randn(2, 4, 6, 6), offset=torch.randn(2, 18, 6, 6),
             weight=torch.randn(5, 4, 3, 3), bias=torch.randn(5), mask=torch.rand(2, 9, 6, 6),
             padding=1)
    a.update(over)
    return a


def call(**over):
    a = conv_args(**over)
    return ops.deform_conv2d(a.pop("input"), a.pop("offset"), a.pop("weight"), **a)


@pytest.mark.parametrize("over,message", [
    (dict(offset=torch.randn(2, 16, 6, 6)), "offset_groups"),
    (dict(offset=torch.randn(2, 36, 6, 6)), r"mask must be \[N, offset_groups\*kh\*kw, out_h, out_w\] = \[2, 18, 6, 6\]"),
    (dict(offset=torch.randn(2, 18, 5, 6)), r"offset must be .* = \[2, 18, 6, 6\], got \[2, 18, 5, 6\]"),
    (dict(offset=torch.randn(1, 18, 6, 6)), r"= \[2, 18, 6, 6\], got \[1, 18, 6, 6\]"),
    (dict(mask=torch.rand(2, 8, 6, 6)), r"mask must be .* = \[2, 9, 6, 6\]"),
    (dict(bias=torch.randn(4)), r"bias must be \[5\]"),
    (dict(weight=torch.randn(5, 3, 3, 3)), "cannot infer groups"),
    (dict(input=torch.randn(2, 4, 6)), "4-D input"),
    (dict(offset=torch.randn(2, 18, 6, 6, dtype=torch.float64)), "offset has dtype Double but input has dtype Float"),
    (dict(input=torch.randint(0, 5, (2, 4, 6, 6)), offset=torch.randint(0, 2, (2, 18, 6, 6)),
          weight=torch.randint(0, 2, (5, 4, 3, 3)), bias=None, mask=None), "floating-point"),
    (dict(padding=-1), "padding must be non-negative"),
    (dict(input=torch.randn(2, 4, 1, 1), padding=0, offset=torch.randn(2, 18, 1, 1),
          mask=None), "does not fit"),
])
def test_deform_conv2d_rejects(over, message):
    with pytest.raises((RuntimeError, ValueError), match=message):
        call(**over)


def test_deform_conv2d_rejects_bad_groups_explicitly():
    a = conv_args()
    with pytest.raises(RuntimeError, match="groups"):
        torch.ops.dcn.deform_conv2d(a["input"], a["weight"], a["offset"], None, None,
                                    1, 1, 1, 1, 1, 1, 3, 1)
    with pytest.raises(RuntimeError, match="stride must be positive"):
        torch.ops.dcn.deform_conv2d(a["input"], a["weight"], a["offset"], None, None,
                                    0, 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match="divisible by offset_groups"):
        torch.ops.dcn.deform_conv2d(a["input"], a["weight"], torch.randn(2, 54, 6, 6), None,
                                    None, 1, 1, 1, 1, 1, 1, 1, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="device mix needs a CUDA GPU")
def test_deform_conv2d_rejects_device_mix():
    with pytest.raises(RuntimeError, match="all tensors must be on one device"):
        call(offset=torch.randn(2, 18, 6, 6, device="cuda"))


def roi_args():
    return torch.randn(2, 8, 10, 10), torch.tensor([[0, 1.0, 1.0, 8.0, 8.0]]), torch.randn(1, 2, 2, 2)


@pytest.mark.parametrize("mutate,message", [
    (lambda x, r, o: (x, r, torch.randn(1, 2, 3, 3)), r"offset must be \[K, 2, pooled_h, pooled_w\] = \[1, 2, 2, 2\]"),
    (lambda x, r, o: (x, r[:, :4], o), r"rois must be \[K, 5\]"),
    (lambda x, r, o: (x, torch.tensor([[2, 1.0, 1.0, 8.0, 8.0]]), o), r"integer batch indices in \[0, 2\)"),
    (lambda x, r, o: (x, torch.tensor([[-1, 1.0, 1.0, 8.0, 8.0]]), o), "integer batch indices"),
    (lambda x, r, o: (x, torch.tensor([[0.5, 1.0, 1.0, 8.0, 8.0]]), o), "integer batch indices"),
    (lambda x, r, o: (x, torch.tensor([[float("nan"), 1.0, 1.0, 8.0, 8.0]]), o), "integer batch indices"),
    (lambda x, r, o: (x, r.double(), o), "rois has dtype Double"),
    (lambda x, r, o: (x[0], r, o), r"input must be \[N, C, H, W\]"),
])
def test_deform_roi_pool_rejects(mutate, message):
    x, r, o = mutate(*roi_args())
    with pytest.raises(RuntimeError, match=message):
        ops.deform_roi_pool(x, r, o, (2, 2), 1.0, 2)


def test_ps_deform_roi_pool_rejects_channel_count():
    x, r, o = roi_args()
    with pytest.raises(RuntimeError, match=r"output_dim \* pooled_h \* pooled_w"):
        ops.ps_deform_roi_pool(x[:, :7], r, o, (2, 2), 1.0, 2)


def test_roi_pool_rejects_bad_hyper_parameters():
    x, r, o = roi_args()
    with pytest.raises(RuntimeError, match="spatial_scale"):
        ops.deform_roi_pool(x, r, o, (2, 2), 0.0, 2)
    with pytest.raises(RuntimeError, match="sampling_ratio must be at most"):
        ops.deform_roi_pool(x, r, o, (2, 2), 1.0, 10**6)
    with pytest.raises(RuntimeError, match="output size must be positive"):
        torch.ops.dcn.deform_roi_pool(x, r, None, 0, 2, 1.0, 2, 0.1)
