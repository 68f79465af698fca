"""Calls every dcn kernel forward and backward on hostile input, for compute-sanitizer.

Each op runs in float32, float16 and bfloat16 (float32 alone on the CPU, for the dry run) on:
offsets far outside the image (+-1e4 pixels), NaN and infinite offsets, RoIs on and beyond the
border of the feature map, and empty batches. Any out-of-bounds access shows up in the
sanitizer's report; a NaN offset must sample 0 rather than read garbage.

    compute-sanitizer --tool memcheck --error-exitcode 1 python gpu_check/sanitize_ops.py
    python gpu_check/sanitize_ops.py --device cpu    # the same calls on the CPU (dry run)
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import ops  # noqa: E402


def offsets(n, channels, h, w, kind, **like):
    """[n, channels, h, w] offsets of one hostile kind."""
    if kind == "far":
        return (torch.rand(n, channels, h, w) * 2e4 - 1e4).to(**like)
    if kind == "nan":
        return torch.full((n, channels, h, w), float("nan")).to(**like)
    if kind == "inf":
        return torch.full((n, channels, h, w), float("inf")).to(**like)
    return (torch.randn(n, channels, h, w) * 3).to(**like)


def deform_conv2d_cases(like):
    """deform_conv2d forward + backward: v1 and v2, groups, stride/dilation, every offset kind."""
    for kind in ("mild", "far", "nan", "inf"):
        for n, c, co, h, w, groups, og, with_mask in ((2, 8, 6, 9, 7, 2, 2, True),
                                                      (1, 4, 4, 5, 6, 1, 1, False),
                                                      (0, 4, 4, 5, 6, 1, 1, True)):
            x = torch.randn(n, c, h, w).to(**like).requires_grad_()
            weight = torch.randn(co, c // groups, 3, 3).to(**like).requires_grad_()
            off = offsets(n, 2 * og * 9, h, w, kind, **like).requires_grad_()
            mask = torch.rand(n, og * 9, h, w).to(**like).requires_grad_() if with_mask else None
            bias = torch.randn(co).to(**like).requires_grad_()
            out = ops.deform_conv2d(x, off, weight, bias, padding=(1, 1), mask=mask)
            out.sum().backward()
            # stride 2, dilation 2, padding 1: (h + 2 - 5) // 2 + 1 output rows
            off2 = offsets(n, 2 * og * 9, (h - 3) // 2 + 1, (w - 3) // 2 + 1, kind, **like)
            strided = ops.deform_conv2d(x, off2, weight, None, stride=(2, 2), dilation=(2, 2),
                                        padding=(1, 1))
            strided.sum().backward()
            if kind == "nan" and n > 0 and with_mask is False:
                # NaN points sample zeros: the output is the bias alone.
                expected = bias.detach().view(1, -1, 1, 1).expand_as(out)
                torch.testing.assert_close(out.detach(), expected)


def roi_pool_cases(like):
    """(ps_)deform_roi_pool forward + backward with RoIs inside, on and far beyond the border."""
    rois = torch.tensor([[0, 0.0, 0.0, 21.0, 17.0],      # the whole map (scale 0.5)
                         [1, -6.0, -4.0, 8.0, 9.0],      # over the top-left border
                         [1, 14.0, 10.0, 30.0, 25.0],    # over the bottom-right border
                         [0, 21.9, 17.9, 22.0, 18.0],    # a sliver on the far corner
                         [1, -1e6, -1e6, 1e6, 1e6],      # far beyond every border
                         [0, 40.0, 40.0, 60.0, 60.0]])   # wholly outside
    for position_sensitive in (False, True):
        op = ops.ps_deform_roi_pool if position_sensitive else ops.deform_roi_pool
        c = 2 * 3 * 2 if position_sensitive else 5
        for kind in ("mild", "far", "nan"):
            x = torch.randn(2, c, 9, 11).to(**like).requires_grad_()
            off = offsets(len(rois), 2, 3, 2, kind, **like).requires_grad_()
            out = op(x, rois.to(**like), off, (3, 2), 0.5, 2)
            out.sum().backward()
            # adaptive sampling (sampling_ratio 0) on the border RoIs only: the far one would
            # ask for a million samples per bin.
            op(x, rois[:4].to(**like), None, (3, 2), 0.5, 0).sum().backward()
        empty = op(x, rois[:0].to(**like), None, (3, 2), 0.5, 2)
        assert empty.shape[0] == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    torch.manual_seed(0)
    dtypes = ([torch.float32, torch.float16, torch.bfloat16] if args.device != "cpu"
              else [torch.float32])
    for dtype in dtypes:
        like = {"device": args.device, "dtype": dtype}
        deform_conv2d_cases(like)
        roi_pool_cases(like)
        if args.device != "cpu":
            torch.cuda.synchronize()
        print(f"every kernel ran forward and backward on {args.device} {dtype}", flush=True)


if __name__ == "__main__":
    main()
