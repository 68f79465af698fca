"""Non-finite (NaN, +-inf) offsets on every implementation that runs here (the torch CPU op and
the ONNX Runtime plugin on CPU; tests/ops/test_cuda.py for the GPU): a sample that moves to a
non-finite place reads zero, the rest of the result is untouched, and no gradient is NaN."""
import numpy as np
import pytest
import torch
from test_onnx_plugins import single_node_model

import onnx_plugins
from model import ops

NON_FINITE = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_conv_offsets_sample_zero_with_zero_offset_gradient(value):
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(1, 18, 6, 6, dtype=torch.float64)
    offset[:, :2] = value  # kernel point 0 (both coordinates) is lost everywhere
    offset.requires_grad_()
    out = ops.deform_conv2d(x, offset, weight, padding=1)
    kept = offset.detach().clone()
    kept_weight = weight.detach().clone()
    kept_weight[:, :, 0, 0] = 0  # the same conv without kernel point 0
    ref = ops.deform_conv2d(x.detach(), kept.nan_to_num(0.0, 0.0, 0.0), kept_weight, padding=1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    gx, gw, go = torch.autograd.grad(out.sum(), (x, weight, offset))
    assert torch.isfinite(gx).all() and torch.isfinite(gw).all() and torch.isfinite(go).all()
    assert torch.count_nonzero(go[:, :2]) == 0 and torch.count_nonzero(go[:, 2:]) > 0


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("position_sensitive", [False, True])
def test_non_finite_roi_offsets_give_finite_results_and_gradients(value, position_sensitive):
    op = ops.ps_deform_roi_pool if position_sensitive else ops.deform_roi_pool
    x = torch.randn(1, 8 if position_sensitive else 3, 9, 9, dtype=torch.float64,
                    requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 7.0, 7.0]], dtype=torch.float64)
    offset = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    offset[0, :, 0, 0] = value  # bin (0, 0) moves nowhere: its samples are all zero
    offset.requires_grad_()
    out = op(x, rois, offset, (2, 2), 1.0, 2, 0.1)
    assert torch.count_nonzero(out[:, :, 0, 0]) == 0 and torch.isfinite(out).all()
    clean = op(x.detach(), rois, offset.detach().nan_to_num(0.0, 0.0, 0.0), (2, 2), 1.0, 2, 0.1)
    torch.testing.assert_close(out[:, :, 1:], clean[:, :, 1:], rtol=1e-12, atol=1e-12)
    gx, go = torch.autograd.grad(out.sum(), (x, offset))
    assert torch.isfinite(gx).all() and torch.isfinite(go).all()
    assert torch.count_nonzero(go[0, :, 0, 0]) == 0


def conv_feeds(value):
    rng = np.random.default_rng(3)
    feeds = {"X": rng.standard_normal((1, 4, 6, 6), dtype=np.float32),
             "W": rng.standard_normal((3, 4, 3, 3), dtype=np.float32),
             "O": rng.standard_normal((1, 18, 6, 6), dtype=np.float32),
             "M": rng.random((1, 9, 6, 6), dtype=np.float32)}
    feeds["O"][:, :2] = value
    feeds["O"][:, 7, 2:4] = value  # and one coordinate of another point, at a few places
    return feeds


@pytest.mark.parametrize("value", NON_FINITE)
def test_ort_plugin_deform_conv2d_with_non_finite_offsets_equals_torch_op(value):
    feeds = conv_feeds(value)
    model = single_node_model("DeformConv2d", "dcn", ["X", "W", "O", "", "M"],
                              kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                              dilations=[1, 1], group=1, offset_group=1)
    got = onnx_plugins.session(model).run(None, feeds)[0]
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    want = ops.deform_conv2d(t["X"], t["O"], t["W"], mask=t["M"], padding=1).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("op,position_sensitive", [("DeformRoIPool", False),
                                                  ("PSDeformRoIPool", True)])
def test_ort_plugin_roi_pools_with_non_finite_offsets_equal_torch_ops(value, op,
                                                                      position_sensitive):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8 if position_sensitive else 3, 9, 9), dtype=np.float32)
    rois = np.array([[0, 1, 1, 7, 7], [0, 0, 2, 8, 5]], np.float32)
    offset = rng.standard_normal((2, 2, 2, 2), dtype=np.float32)
    offset[0, :, 0, 0] = value
    offset[1, 1, 1, 0] = value
    model = single_node_model(op, "dcn", ["X", "R", "O"], pooled_size=[2, 2], spatial_scale=1.0,
                              sampling_ratio=2, gamma=0.1, aligned=1)
    got = onnx_plugins.session(model).run(None, {"X": x, "R": rois, "O": offset})[0]
    fn = ops.ps_deform_roi_pool if position_sensitive else ops.deform_roi_pool
    want = fn(torch.from_numpy(x), torch.from_numpy(rois), torch.from_numpy(offset), (2, 2), 1.0,
              2, 0.1).numpy()
    assert np.isfinite(got).all() and not got[0, :, 0, 0].any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("value", NON_FINITE)
def test_cuda_ops_with_non_finite_offsets_equal_cpu(value):
    t = {k: torch.from_numpy(v) for k, v in conv_feeds(value).items()}
    results = []
    for device in ("cpu", "cuda"):
        leaves = [t[k].to(device).requires_grad_() for k in ("X", "O", "W", "M")]
        out = ops.deform_conv2d(leaves[0], leaves[1], leaves[2], mask=leaves[3], padding=1)
        rois = torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]], device=device)
        pooled = ops.deform_roi_pool(out, rois, leaves[1][:, :8].reshape(1, 2, 2, 2).contiguous(),
                                     (2, 2), 1.0, 2, 0.1)
        grads = torch.autograd.grad(pooled.sum() + out.sum(), leaves)
        results.append([r.cpu() for r in (out, pooled, *grads)])
    for a, b in zip(*results):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
