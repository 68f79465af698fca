"""Reduced precision with tolerances derived from the dtype, TorchScript backward and the
adaptive sampling cap.

The reference is the float64 op on the same (already rounded) inputs, so the only error left is
the op's own: rounding the result (and any stored intermediate) to the dtype, at most
eps(dtype) relative to the magnitude of the terms, plus summing `length` terms in float32. The
tolerance is exactly that; an op that summed in float16/bfloat16, or any 1% gain error, fails
(each test checks that its tolerance rejects the result scaled by 1.01)."""
import pytest
import torch
import torchvision

from model import ops

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23}
REDUCED = [torch.float16, torch.bfloat16]


def tolerance(dtype, magnitude, length):
    """Worst-case error of a `length`-term sum of magnitude |terms| = `magnitude` (a tensor),
    computed in float32 and stored in `dtype`."""
    return EPS[dtype] * magnitude + length * EPS[torch.float32] * magnitude


def assert_within(out, ref, magnitude, dtype, length):
    bound = tolerance(dtype, magnitude, length)
    error = (out.double() - ref).abs()
    assert (error <= bound).all(), f"max error / bound {(error / bound).max().item():.2f}"
    # Teeth: a 1% gain error must not pass.
    assert ((out.double() * 1.01 - ref).abs() > bound).any()


def conv_inputs(dtype, n=2, c=8, co=6, h=9, w=8):
    """Positive inputs (so |result| = the terms' magnitude and a gain error shows everywhere),
    rounded to `dtype`, returned in float64."""
    x = torch.rand(n, c, h, w, dtype=torch.float64) + 0.5
    weight = torch.rand(co, c, 3, 3, dtype=torch.float64) + 0.1
    offset = torch.randn(n, 18, h, w, dtype=torch.float64)
    mask = torch.rand(n, 9, h, w, dtype=torch.float64) + 0.2
    bias = torch.rand(co, dtype=torch.float64)
    return [t.to(dtype).double() for t in (x, offset, weight, bias, mask)]


def conv(x, offset, weight, bias, mask):
    return ops.deform_conv2d(x, offset, weight, bias, mask=mask, padding=1)


@pytest.mark.parametrize("dtype", REDUCED)
def test_deform_conv2d_reduced_precision_forward(dtype):
    args = conv_inputs(dtype)
    ref = conv(*args)
    out = conv(*(t.to(dtype) for t in args))
    assert out.dtype == dtype
    assert_within(out, ref, ref.abs(), dtype, length=8 * 9 + 1)


@pytest.mark.parametrize("dtype", REDUCED)
def test_deform_conv2d_reduced_precision_backward(dtype):
    args = conv_inputs(dtype)
    seed = torch.rand(2, 6, 9, 8, dtype=torch.float64).to(dtype).double() + 0.5
    leaves = [t.clone().requires_grad_() for t in args]
    ref = torch.autograd.grad(conv(*leaves), leaves, seed)
    low = [t.to(dtype).requires_grad_() for t in args]
    got = torch.autograd.grad(conv(*low), low, seed.to(dtype))
    lengths = {"x": 6 * 9, "weight": 2 * 9 * 8, "bias": 2 * 9 * 8, "mask": 6 * 8}
    # Inputs and seed are positive, so every term of these gradients is: |ref| is their magnitude.
    for name, g, r in zip(("x", "offset", "weight", "bias", "mask"), got, ref):
        assert g.dtype == dtype, name
        if name == "offset":
            # A difference of bilinear taps: bound it by the largest gradient (float32 sums of
            # 6 * 8 terms, then one rounding to dtype).
            bound = tolerance(dtype, r.abs().max(), 6 * 8 * 4)
            assert ((g.double() - r).abs() <= bound).all(), name
            continue
        assert_within(g, r, r.abs(), dtype, lengths[name])


@pytest.mark.parametrize("dtype", REDUCED)
@pytest.mark.parametrize("position_sensitive", [False, True])
def test_roi_pools_reduced_precision_forward_and_backward(dtype, position_sensitive):
    c = 2 * 3 * 2 if position_sensitive else 5
    op = ops.ps_deform_roi_pool if position_sensitive else ops.deform_roi_pool
    x = (torch.rand(2, c, 12, 12, dtype=torch.float64) + 0.5).to(dtype).double()
    rois = torch.tensor([[0, 1.0, 2.0, 20.0, 18.0], [1, 3.0, 0.0, 11.0, 22.0]],
                        dtype=torch.float64)
    offset = (torch.randn(2, 2, 3, 2, dtype=torch.float64) * 0.2).to(dtype).double()
    args = ((3, 2), 0.5, 2, 0.1)
    xr = x.clone().requires_grad_()
    ref = op(xr, rois, offset, *args)
    xl = x.to(dtype).requires_grad_()
    out = op(xl, rois.to(dtype), offset.to(dtype), *args)
    # Bin centres are computed from the dtype's RoI coordinates: exact here (small integers).
    assert_within(out, ref, ref.abs(), dtype, length=4)
    seed = torch.rand_like(ref) + 0.5
    (gr,) = torch.autograd.grad(ref, xr, seed)
    (gl,) = torch.autograd.grad(out, xl, seed.to(dtype).double().to(dtype))
    assert gl.dtype == dtype
    overlapping_bins = 4 * 3 * 2 * 2  # samples of all bins and RoIs that may share a pixel
    assert_within(gl, gr, gr.abs(), dtype, overlapping_bins)


def test_torchscript_backward_equals_eager():
    def both(x, offset, weight, mask, rois, roi_offset):
        y = ops.deform_conv2d(x, offset, weight, None, mask=mask, padding=(1, 1))
        return ops.deform_roi_pool(y, rois, roi_offset, (2, 2), 1.0, 2, 0.1)

    scripted = torch.jit.script(both)
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    tensors = [x, torch.randn(1, 18, 8, 8, dtype=torch.float64),
               torch.randn(5, 4, 3, 3, dtype=torch.float64),
               torch.rand(1, 9, 8, 8, dtype=torch.float64)]
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0]], dtype=torch.float64)
    roi_offset = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    results = []
    for fn in (both, scripted):
        leaves = [t.clone().requires_grad_() for t in (*tensors, roi_offset)]
        out = fn(*leaves[:4], rois, leaves[4])
        results.append((out, torch.autograd.grad(out.sum(), leaves)))
    (eager, eager_grads), (script, script_grads) = results
    assert torch.equal(eager, script)
    for a, b in zip(eager_grads, script_grads):
        assert torch.count_nonzero(a) > 0 and torch.equal(a, b)


def test_adaptive_sampling_is_capped_at_map_size_plus_one():
    # A RoI 80 px across on a 9 x 9 map, one bin: ceil(80) samples per side capped at 10.
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    roi = torch.tensor([[0, -30.0, -40.0, 50.0, 40.0]], dtype=torch.float64)
    adaptive = ops.deform_roi_pool(x, roi, None, (1, 1), 1.0, 0)
    torch.testing.assert_close(adaptive, torchvision.ops.roi_align(x, roi, (1, 1), 1.0, 10,
                                                                   aligned=True),
                               rtol=1e-12, atol=1e-12)
    assert not torch.allclose(adaptive, ops.deform_roi_pool(x, roi, None, (1, 1), 1.0, 11))
    small = torch.tensor([[0, 1.0, 2.0, 4.5, 5.5]], dtype=torch.float64)  # under the cap: ceil
    torch.testing.assert_close(ops.deform_roi_pool(x, small, None, (1, 1), 1.0, 0),
                               torchvision.ops.roi_align(x, small, (1, 1), 1.0, 4, aligned=True),
                               rtol=1e-12, atol=1e-12)
