"""deform_conv2d against torchvision (an independent implementation), dense conv and gradcheck."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from model import ops

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation, groups, offset_groups)
GRID = [
    (2, 4, 6, 7, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    (1, 4, 4, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1), 2, 1),
    (2, 6, 4, 8, 8, (3, 3), (1, 1), (2, 2), (2, 2), 1, 3),
    (1, 4, 6, 6, 9, (2, 3), (1, 2), (0, 1), (1, 1), 2, 2),
    (1, 8, 8, 7, 7, (3, 1), (1, 1), (1, 0), (2, 1), 4, 2),
    (3, 2, 3, 5, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1),
    (1, 6, 6, 10, 6, (3, 3), (3, 2), (2, 0), (1, 2), 3, 6),
    # depthwise (one channel per conv group: the im2col's strided path), as the detector's
    (2, 6, 6, 7, 8, (3, 3), (1, 1), (1, 1), (1, 1), 6, 1),
    (1, 4, 8, 6, 7, (3, 3), (2, 1), (1, 1), (1, 1), 4, 2),
]


def out_size(h, k, s, p, d):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def make_case(case, offset_scale=3.0, with_mask=True, with_bias=True, dtype=torch.float64):
    n, c, co, h, w, k, s, p, d, g, og = case
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    x = torch.randn(n, c, h, w, dtype=dtype)
    weight = torch.randn(co, c // g, *k, dtype=dtype)
    offset = torch.randn(n, 2 * og * k[0] * k[1], ho, wo, dtype=dtype) * offset_scale
    mask = torch.rand(n, og * k[0] * k[1], ho, wo, dtype=dtype) if with_mask else None
    bias = torch.randn(co, dtype=dtype) if with_bias else None
    return x, weight, offset, mask, bias, dict(stride=s, padding=p, dilation=d)


def both(x, weight, offset, mask, bias, kw):
    ours = ops.deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
    theirs = torchvision.ops.deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
    return ours, theirs


def grads(out, inputs, seed_grad):
    inputs = [t for t in inputs if t is not None]
    return torch.autograd.grad(out, inputs, seed_grad)


@pytest.mark.parametrize("case", GRID)
@pytest.mark.parametrize("with_mask,with_bias", [(True, True), (False, False), (True, False)])
def test_matches_torchvision_forward_and_gradients(case, with_mask, with_bias):
    x, weight, offset, mask, bias, kw = make_case(case, with_mask=with_mask, with_bias=with_bias)
    leaves = [t.requires_grad_() for t in (x, weight, offset, mask, bias) if t is not None]
    ours, theirs = both(x, weight, offset, mask, bias, kw)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ours)
    for a, b in zip(grads(ours, leaves, g), grads(theirs, leaves, g)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("value", [0.0, 1.0, -1.0, 2.0, -3.0, 0.5])
def test_offsets_on_pixel_borders_match_torchvision(value):
    # Integer offsets land exactly on pixels and on the image border (y = -1, H, ...).
    x, weight, offset, mask, bias, kw = make_case(GRID[0])
    offset = torch.full_like(offset, value)
    offset[:, ::3] = -value  # mix signs across points
    leaves = [t.requires_grad_() for t in (x, weight, offset, mask, bias)]
    ours, theirs = both(x, weight, offset, mask, bias, kw)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(ours)
    for a, b in zip(grads(ours, leaves, g), grads(theirs, leaves, g)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_offsets_far_outside_sample_zero():
    x, weight, offset, mask, bias, kw = make_case(GRID[0], with_bias=False)
    offset = torch.full_like(offset, 1e4)
    offset[:, 1::2] = -1e6
    out = ops.deform_conv2d(x, offset, weight, None, mask=mask, **kw)
    assert torch.equal(out, torch.zeros_like(out))


def test_non_finite_offsets_sample_zero():
    x, weight, offset, mask, bias, kw = make_case(GRID[0], with_bias=False, with_mask=False)
    offset[:] = float("nan")
    offset[:, 0] = float("inf")
    offset[:, 1] = -float("inf")
    out = ops.deform_conv2d(x, offset, weight, None, **kw)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("case", GRID)
def test_zero_offsets_equal_conv2d(case):
    x, weight, offset, _, bias, kw = make_case(case)
    g = case[9]
    out = ops.deform_conv2d(x, torch.zeros_like(offset), weight, bias, **kw)
    torch.testing.assert_close(out, F.conv2d(x, weight, bias, groups=g, **kw), rtol=1e-12,
                               atol=1e-12)


def test_float32_matches_float64():
    x, weight, offset, mask, bias, kw = make_case(GRID[2])
    ref = ops.deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
    out = ops.deform_conv2d(*(t.float() for t in (x, offset, weight, bias)), mask=mask.float(), **kw)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_on_cpu(dtype):
    x, weight, offset, mask, bias, kw = make_case(GRID[0], offset_scale=1.0)
    ref = ops.deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
    args = [t.to(dtype) for t in (x, offset, weight, bias, mask)]
    out = ops.deform_conv2d(*args[:4], mask=args[4], **kw)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=0.05, atol=0.3)


def test_many_column_chunks_match_torchvision():
    # C*K*N*H*W exceeds one column chunk (2^23 entries), so the columns are processed in pieces.
    x = torch.randn(2, 64, 96, 96)
    weight = torch.randn(8, 64, 3, 3) * 0.05
    offset = torch.randn(2, 18, 96, 96) * 2
    ours = ops.deform_conv2d(x, offset, weight, padding=1)
    theirs = torchvision.ops.deform_conv2d(x, offset, weight, padding=1)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_channels_last_and_non_contiguous_inputs():
    x, weight, offset, mask, bias, kw = make_case(GRID[2])
    ref = ops.deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    off_nc = torch.stack([offset, -offset], dim=-1)[..., 0]  # same values, strided
    assert not off_nc.is_contiguous()
    w_t = weight.transpose(2, 3).contiguous().transpose(2, 3)
    out = ops.deform_conv2d(x_cl, off_nc, w_t, bias, mask=mask.transpose(2, 3).contiguous()
                            .transpose(2, 3), **kw)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out.is_contiguous()


def test_empty_batch():
    x, weight, offset, mask, bias, kw = make_case(GRID[0])
    out = ops.deform_conv2d(x[:0], offset[:0], weight, bias, mask=mask[:0], **kw)
    assert out.shape == (0, 6, 7, 8)


@pytest.mark.parametrize("with_mask", [False, True])
def test_gradcheck(with_mask):
    case = (2, 4, 2, 4, 5, (2, 2), (1, 1), (1, 0), (1, 2), 2, 2)
    x, weight, offset, mask, bias, kw = make_case(case, offset_scale=0.7, with_mask=with_mask)
    leaves = [t.requires_grad_() for t in (x, weight, offset, mask, bias) if t is not None]

    def fn(*t):
        xx, ww, oo = t[0], t[1], t[2]
        mm = t[3] if with_mask else None
        return ops.deform_conv2d(xx, oo, ww, t[-1], mask=mm, **kw)

    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-6)


def test_ops_infer_groups():
    for case in GRID:
        x, weight, offset, mask, bias, kw = make_case(case)
        explicit = ops.deform_conv2d(x, offset, weight, bias, mask=mask, groups=case[9],
                                     offset_groups=case[10], **kw)
        inferred = ops.deform_conv2d(x, offset, weight, bias, mask=mask, **kw)
        assert torch.equal(explicit, inferred)


def test_int_arguments_are_pairs():
    x, weight, offset, mask, bias, _ = make_case(GRID[0])
    a = ops.deform_conv2d(x, offset, weight, bias, stride=1, padding=1, dilation=1)
    b = ops.deform_conv2d(x, offset, weight, bias, stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    assert torch.equal(a, b)
