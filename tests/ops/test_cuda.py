"""CUDA kernels against the CPU op (itself checked against torchvision and the reference).

These run wherever a CUDA GPU is present (`make gpu-check` runs them); without one they skip and
say so (the kernels are still compiled by every `make test`)."""
import contextlib

import pytest
import torch
from test_deform_conv2d import GRID, both, grads, make_case

from model import ops

pytestmark = pytest.mark.cuda


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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", GRID)
def test_deform_conv2d_cuda_matches_torchvision_cuda(case, dtype):
    x, w, off, mask, bias, kw = (t.to("cuda", dtype) if isinstance(t, torch.Tensor) else t
                                 for t in make_case(case))
    leaves = [t.requires_grad_() for t in (x, w, off, mask, bias)]
    with matmul_tf32(False):  # torchvision's GEMM follows the same switch
        ours, theirs = both(x, w, off, mask, bias, kw)
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
        g = torch.randn_like(ours)
        for a, b in zip(grads(ours, leaves, g), grads(theirs, leaves, g)):
            torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10)


def test_deform_conv2d_cuda_gradcheck():
    case = (2, 4, 2, 4, 5, (2, 2), (1, 1), (1, 0), (1, 2), 2, 2)
    x, w, off, mask, bias, kw = make_case(case, offset_scale=0.7)
    leaves = tuple(t.cuda().requires_grad_() for t in (x, w, off, mask, bias))
    fn = lambda x, w, o, m, b: ops.deform_conv2d(x, o, w, b, mask=m, **kw)  # noqa: E731
    # The input gradient is an atomicAdd scatter: its summation order (and last bits) may vary
    # between the two backward passes gradcheck compares.
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, nondet_tol=1e-12)


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
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
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
    tol = {torch.float64: 1e-10, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
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


@contextlib.contextmanager
def matmul_tf32(allowed):
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def wide_case():
    """float32 CUDA inputs with a long reduction (C*K = 2304), where TF32's 10-bit mantissa
    shows (~1e-3), and the float64 CPU result."""
    x, off = torch.randn(1, 256, 12, 12), torch.randn(1, 18, 12, 12)
    w = torch.randn(64, 256, 3, 3) / 48
    ref = ops.deform_conv2d(x.double(), off.double(), w.double(), padding=(1, 1))
    return [t.cuda() for t in (x, off, w)], ref


def test_float32_is_full_precision_unless_tf32_allowed():
    """cuDNN's TF32 switch is on by default; ours follows the matmul switch (off by default)."""
    assert torch.backends.cudnn.allow_tf32
    (x, off, w), ref = wide_case()
    with matmul_tf32(False):
        out = ops.deform_conv2d(x, off, w, padding=(1, 1))
    torch.testing.assert_close(out.double().cpu(), ref, rtol=1e-5, atol=2e-5)


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0),
                    reason="TF32 needs an Ampere or newer GPU")
def test_tf32_when_the_user_allows_it():
    (x, off, w), ref = wide_case()
    with matmul_tf32(True):
        out = ops.deform_conv2d(x, off, w, padding=(1, 1))
    err = (out.double().cpu() - ref).abs().max().item()
    assert 2e-5 < err < 2e-2, f"TF32 error {err}: TF32 not used, or worse than TF32"


NONDETERMINISTIC = r"dcn::{} backward \(CUDA\) does not have a deterministic implementation"


def test_backward_alerts_under_deterministic_algorithms():
    x, w, off, mask, bias, kw = make_case(GRID[0])
    xg, wg, og = (t.cuda().requires_grad_() for t in (x, w, off))
    torch.use_deterministic_algorithms(True)
    try:
        out = ops.deform_conv2d(xg, og, wg, **kw)  # forward is deterministic
        with pytest.raises(RuntimeError, match=NONDETERMINISTIC.format("deform_conv2d")):
            out.sum().backward()
        rois = torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]], device="cuda", dtype=xg.dtype)
        pooled = ops.deform_roi_pool(xg, rois, None, (2, 2), 1.0, 2)
        with pytest.raises(RuntimeError, match=NONDETERMINISTIC.format("deform_roi_pool")):
            pooled.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)


def test_deform_conv2d_never_waits_for_the_gpu():
    """Forward and backward queue work without a host synchronisation (which would stall the
    pipeline and break CUDA-graph capture)."""
    x, w, off, mask, bias, kw = make_case(GRID[2], dtype=torch.float32)
    leaves = [t.cuda().requires_grad_() for t in (x, w, off, mask, bias)]
    ops.deform_conv2d(leaves[0], leaves[2], leaves[1], leaves[4], mask=leaves[3], **kw)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = ops.deform_conv2d(leaves[0], leaves[2], leaves[1], leaves[4], mask=leaves[3], **kw)
        torch.autograd.grad(out, leaves, torch.ones_like(out))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_deform_conv2d_forward_replays_in_a_cuda_graph():
    x, w, off, mask, bias, kw = make_case(GRID[0], dtype=torch.float32)
    x, w, off, mask, bias = (t.cuda() for t in (x, w, off, mask, bias))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the capture, as torch asks
        ops.deform_conv2d(x, off, w, bias, mask=mask, **kw)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.deform_conv2d(x, off, w, bias, mask=mask, **kw)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.testing.assert_close(out, ops.deform_conv2d(x, off, w, bias, mask=mask, **kw))


def test_torchscript_and_torch_compile_on_cuda():
    from test_compile_export import Head, inputs

    m = Head().cuda().eval()
    x, rois = (t.cuda() for t in inputs())
    with torch.no_grad():
        eager = m(x, rois)
        for out in (torch.jit.script(m)(x, rois), torch.compile(m, fullgraph=True)(x, rois)):
            for a, b in zip(out, eager):
                torch.testing.assert_close(a, b)
