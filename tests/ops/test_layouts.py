"""Every op, forward and every gradient, on non-contiguous, channels-last, expanded and zero-size
inputs against the same values laid out contiguously. The kernels read and write dense buffers,
so a tensor passed through with its strides (input or gradient) shows up here."""
import pytest
import torch

from model import ops


def strided(t):
    """Same values, every other element of a wider buffer (no dimension has stride 1)."""
    return torch.stack([t, torch.full_like(t, float("nan"))], dim=-1)[..., 0]


def transposed(t):
    """Same values with the last two dimensions' strides swapped."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() >= 2 else strided(t)


def channels_last(t):
    """Same values, NHWC strides (for an offset [K, 2, ph, pw]: base.permute(0, 3, 1, 2))."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else transposed(t)


def expanded(t):
    """The first row repeated with stride 0 (other values than t: compared against its copy)."""
    return t[:1].expand_as(t)


LAYOUTS = {"strided": strided, "transposed": transposed, "channels_last": channels_last,
           "expanded": expanded}


def conv_case(n=2):
    x = torch.randn(n, 4, 6, 7, dtype=torch.float64)
    return {"x": x, "offset": torch.randn(n, 2 * 2 * 9, 6, 7, dtype=torch.float64) * 2,
            "weight": torch.randn(6, 2, 3, 3, dtype=torch.float64),
            "mask": torch.rand(n, 2 * 9, 6, 7, dtype=torch.float64),
            "bias": torch.randn(6, dtype=torch.float64)}


def conv(t):
    return ops.deform_conv2d(t["x"], t["offset"], t["weight"], t["bias"], mask=t["mask"],
                             padding=1)


def roi_case(position_sensitive, k=4):
    c = 2 * 3 * 2 if position_sensitive else 3
    rois = torch.tensor([[0, 2.0, 3.0, 15.0, 12.0], [1, -6.0, -4.0, 8.0, 9.0],
                         [1, 0.0, 0.0, 21.0, 17.0], [0, 5.0, 5.0, 9.5, 6.0]],
                        dtype=torch.float64)[:k]
    return {"x": torch.randn(2, c, 9, 11, dtype=torch.float64), "rois": rois,
            "offset": torch.randn(k, 2, 3, 2, dtype=torch.float64)}


def roi_op(position_sensitive):
    op = ops.ps_deform_roi_pool if position_sensitive else ops.deform_roi_pool
    return lambda t: op(t["x"], t["rois"], t["offset"], (3, 2), 0.5, 2, 0.1)


OPS = {"deform_conv2d": (conv_case, conv, ("x", "offset", "weight", "mask", "bias")),
       "deform_roi_pool": (lambda: roi_case(False), roi_op(False), ("x", "offset")),
       "ps_deform_roi_pool": (lambda: roi_case(True), roi_op(True), ("x", "offset"))}


def forward_and_grads(fn, tensors, differentiable, seed):
    """fn's output and the gradient of <output, seed> for each differentiable tensor."""
    leaves = {k: v.detach().requires_grad_(k in differentiable) for k, v in tensors.items()}
    out = fn(leaves)
    wanted = [leaves[k] for k in differentiable]
    grads = torch.autograd.grad(out, wanted, seed(out), allow_unused=True)
    return out, grads


def assert_same(got, want):
    out, grads = got
    ref_out, ref_grads = want
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_tensor_in_each_layout_matches_contiguous(op, layout):
    make, fn, differentiable = OPS[op]
    base = make()
    seed = torch.Generator().manual_seed(1)
    grad_seed = lambda out: torch.randn(out.shape, generator=seed.manual_seed(1),  # noqa: E731
                                        dtype=out.dtype)
    for name in base:
        varied = dict(base, **{name: LAYOUTS[layout](base[name])})
        assert not varied[name].is_contiguous() or varied[name].numel() <= 1, name
        dense = {k: v.contiguous() for k, v in varied.items()}
        assert_same(forward_and_grads(fn, varied, differentiable, grad_seed),
                    forward_and_grads(fn, dense, differentiable, grad_seed))


def test_permuted_roi_offset_gets_the_right_gradient():
    # The layout of the reported bug: offset = base.permute(0, 3, 1, 2), checked by gradcheck.
    t = roi_case(False, k=2)
    base = t["offset"].permute(0, 2, 3, 1).contiguous().mul(0.3).requires_grad_()
    fn = lambda bb: ops.deform_roi_pool(t["x"], t["rois"], bb.permute(0, 3, 1, 2),  # noqa: E731
                                        (3, 2), 0.5, 2, 0.1)
    assert torch.autograd.gradcheck(fn, (base,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", ["strided", "transposed", "channels_last"])
def test_zero_size_inputs_in_each_layout(op, layout):
    make, fn, differentiable = OPS[op]
    # conv: an empty batch; RoI pools: no RoIs (zero rows in the rois and the offsets).
    rows = ("x", "offset", "mask") if op == "deform_conv2d" else ("rois", "offset")
    empty = {k: v[:0] if k in rows else v for k, v in make().items()}
    varied = {k: LAYOUTS[layout](v) for k, v in empty.items()}
    zeros = lambda out: torch.zeros_like(out)  # noqa: E731
    out, grads = forward_and_grads(fn, varied, differentiable, zeros)
    ref_out, ref_grads = forward_and_grads(fn, {k: v.contiguous() for k, v in varied.items()},
                                           differentiable, zeros)
    assert out.numel() == 0 and out.shape == ref_out.shape
    for g, r, name in zip(grads, ref_grads, differentiable):
        assert g.shape == varied[name].shape
        torch.testing.assert_close(g, r)
        assert torch.count_nonzero(g) == 0
