"""CUDA kernels against the CPU op (itself checked against torchvision and the reference).

These run wherever a CUDA GPU is present; without one they skip and say so (the kernels are still
compiled by every `make test`)."""
import pytest
import torch

from conftest import requires_cuda
from model import ops
from test_deform_conv2d import GRID, make_case

pytestmark = requires_cuda


def to(device, *ts):
    return [t.to(device) if t is not None else None for t in ts]


@pytest.mark.parametrize("case", GRID)
def test_deform_conv2d_cuda_matches_cpu_float64(case):
    x, w, off, mask, bias, kw = make_case(case)
    leaves_cpu = [t.requires_grad_() for t in (x, w, off, mask, bias)]
    leaves_gpu = [t.detach().cuda().requires_grad_() for t in leaves_cpu]
    out_cpu = ops.deform_conv2d(x, off, w, bias, mask=mask, **kw)
    xg, wg, og, mg, bg = leaves_gpu
    out_gpu = ops.deform_conv2d(xg, og, wg, bg, mask=mg, **kw)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(out_cpu)
    for a, b in zip(torch.autograd.grad(out_gpu, leaves_gpu, g.cuda()),
                    torch.autograd.grad(out_cpu, leaves_cpu, g)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-8, atol=1e-8)


def test_deform_conv2d_cuda_gradcheck():
    case = (2, 4, 2, 4, 5, (2, 2), (1, 1), (1, 0), (1, 2), 2, 2)
    x, w, off, mask, bias, kw = make_case(case, offset_scale=0.7)
    leaves = tuple(t.cuda().requires_grad_() for t in (x, w, off, mask, bias))
    fn = lambda x, w, o, m, b: ops.deform_conv2d(x, o, w, b, mask=m, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_deform_conv2d_cuda_reduced_precision(dtype):
    x, w, off, mask, bias, kw = make_case(GRID[2], offset_scale=1.0)
    ref = ops.deform_conv2d(x, off, w, bias, mask=mask, **kw)
    xs, os_, ws, bs, ms = (t.to("cuda", dtype) for t in (x, off, w, bias, mask))
    out = ops.deform_conv2d(xs, os_, ws, bs, mask=ms, **kw)
    assert out.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 0.1
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol * 5)


@pytest.mark.parametrize("name", ["deform_roi_pool", "ps_deform_roi_pool"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_roi_pools_cuda_match_cpu(name, dtype):
    from test_deform_roi_pool import make
    x, rois, off = make(name.startswith("ps"))
    op = getattr(ops, name)
    x.requires_grad_()
    off.requires_grad_()
    ref = op(x, rois, off, (3, 2), 0.5, 2)
    xg = x.detach().to("cuda", dtype).requires_grad_()
    og = off.detach().to("cuda", dtype).requires_grad_()
    out = op(xg, rois.to("cuda", dtype), og, (3, 2), 0.5, 2)
    tol = 1e-10 if dtype == torch.float64 else 2e-2
    torch.testing.assert_close(out.double().cpu(), ref, rtol=tol, atol=tol)
    g = torch.randn_like(ref)
    gx, go = torch.autograd.grad(ref, (x, off), g)
    gxg, gog = torch.autograd.grad(out, (xg, og), g.to("cuda", dtype))
    torch.testing.assert_close(gxg.double().cpu(), gx, rtol=tol, atol=tol * 10)
    torch.testing.assert_close(gog.double().cpu(), go, rtol=tol * 10, atol=tol * 10)


def test_cuda_rejects_device_mix():
    x, w, off, mask, bias, kw = make_case(GRID[0])
    with pytest.raises(RuntimeError, match="one device"):
        ops.deform_conv2d(x.cuda(), off, w.cuda(), None, **kw)
