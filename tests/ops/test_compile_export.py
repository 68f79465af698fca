"""The ops work under TorchScript, torch.export and torch.compile, and pass opcheck."""
import pytest
import torch
from torch import nn

from model.ops.layers import DeformRoIPool, ModulatedDeformConv2d, PSDeformRoIPool


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ModulatedDeformConv2d(4, 8, 3, padding=1, offset_groups=2)
        self.pool = DeformRoIPool(8, 2, spatial_scale=1.0)
        self.ps = PSDeformRoIPool(2, 2, spatial_scale=1.0)
        with torch.no_grad():  # non-trivial offsets
            self.conv.offset_conv.weight.normal_(0, 0.1)
            self.pool.offset_fc.weight.normal_(0, 0.01)
            self.ps.offset_fc.weight.normal_(0, 0.01)

    def forward(self, x, rois):
        y = self.conv(x)
        return self.pool(y, rois), self.ps(y, rois)


def inputs():
    return torch.randn(2, 4, 12, 12), torch.tensor([[0, 1.0, 1.0, 9.0, 8.0], [1, 3.0, 0.0, 11.0, 11.0]])


def test_torchscript_matches_eager():
    m = Head().eval()
    x, rois = inputs()
    scripted = torch.jit.script(m)
    for a, b in zip(scripted(x, rois), m(x, rois)):
        torch.testing.assert_close(a, b)


def test_torch_export_runs_and_matches():
    m = Head().eval()
    x, rois = inputs()
    ep = torch.export.export(m, (x, rois))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"dcn.deform_conv2d.default", "dcn.deform_roi_pool.default",
            "dcn.ps_deform_roi_pool.default"} <= targets
    for a, b in zip(ep.module()(x, rois), m(x, rois)):
        torch.testing.assert_close(a, b)


def test_torch_compile_forward_and_backward():
    m = Head()
    x, rois = inputs()
    x.requires_grad_()
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    out_c = compiled(x, rois)
    out_e = m(x, rois)
    for a, b in zip(out_c, out_e):
        torch.testing.assert_close(a, b)
    (gc,) = torch.autograd.grad(sum(o.sum() for o in out_c), x)
    (ge,) = torch.autograd.grad(sum(o.sum() for o in out_e), x)
    torch.testing.assert_close(gc, ge)


def test_torch_compile_inductor_forward():
    m = Head().eval()
    x, rois = inputs()
    with torch.no_grad():
        out = torch.compile(m, fullgraph=True)(x, rois)
        for a, b in zip(out, m(x, rois)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("with_mask", [False, True])
def test_opcheck_deform_conv2d(with_mask):
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    off = torch.randn(1, 36, 5, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 18, 5, 5, dtype=torch.float64, requires_grad=True) if with_mask else None
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.dcn.deform_conv2d.default,
                          (x, w, off, mask, b, 1, 1, 1, 1, 1, 1, 2, 2))


@pytest.mark.parametrize("name", ["deform_roi_pool", "ps_deform_roi_pool"])
def test_opcheck_roi_pools(name):
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.0, 0.0, 4.0, 5.0], [1, 1.0, 1.0, 5.0, 5.0]], dtype=torch.float64)
    off = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(getattr(torch.ops.dcn, name).default,
                          (x, rois, off, 2, 2, 1.0, 2, 0.1))
