"""CPU speed of dcn::deform_roi_pool / ps_deform_roi_pool (float32) against torchvision's
roi_align / ps_roi_align, forward and forward+backward, timed in one interleaved run (ratios > 1:
ours slower). The shape is the detector's box head in training: 4 images, 256 channels at stride
8 of a 400 px crop, 1024 RoIs (256 per image), 7x7 bins, 2x2 samples per bin.

    python benchmarks/deform_roi_pool.py [--threads 2] [--rounds 20]
"""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from timing import compare, op_benchmark_args  # noqa: E402

from model import ops  # noqa: E402


def random_rois(k: int, images: int, size: float) -> torch.Tensor:
    """[k, 5] boxes (batch index, x1, y1, x2, y2) of 10-120 px inside a size x size image."""
    wh = torch.empty(k, 2).uniform_(10, 120)
    xy = torch.rand(k, 2) * (size - wh)
    index = torch.randint(images, (k, 1)).float()
    return torch.cat([index, xy, xy + wh], 1)


def forward_backward(fn, x):
    def run():
        x.grad = None
        fn().sum().backward()
    return run


def main():
    args = op_benchmark_args(__doc__, rounds=20)
    rois = random_rois(1024, 4, 400.0)
    scale, out = 1 / 8, (7, 7)
    x = torch.randn(4, 256, 50, 50, requires_grad=True)
    xps = torch.randn(4, 8 * 49, 50, 50, requires_grad=True)  # 8 classes of R-FCN score maps
    offset = (torch.randn(1024, 2, 7, 7) * 0.5).requires_grad_()
    cases = {
        "deform_roi_pool": (
            x,
            lambda: ops.deform_roi_pool(x, rois, offset, out, scale, 2),
            lambda: ops.deform_roi_pool(x, rois, None, out, scale, 2),
            lambda: torchvision.ops.roi_align(x, rois, out, scale, 2, aligned=True)),
        "ps_deform_roi_pool": (
            xps,
            lambda: ops.ps_deform_roi_pool(xps, rois, offset, out, scale, 2),
            lambda: ops.ps_deform_roi_pool(xps, rois, None, out, scale, 2),
            lambda: torchvision.ops.ps_roi_align(xps, rois, out, scale, 2)),
    }
    print(f"RoI pooling, CPU float32, {args.threads} threads, 1024 RoIs, best of {args.rounds} "
          "interleaved runs (times in ms)")
    header = ("op", "pass", "ours (offsets)", "ours (no offsets)", "torchvision",
              "ours/torchvision")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, (inp, ours, plain, tv) in cases.items():
        with torch.no_grad():
            fwd = compare({"ours": ours, "plain": plain, "tv": tv}, rounds=args.rounds)
        both = compare({"ours": forward_backward(ours, inp), "plain": forward_backward(plain, inp),
                        "tv": forward_backward(tv, inp)}, rounds=args.rounds)
        for label, t in (("forward", fwd), ("forward+backward", both)):
            print(f"| {name} | {label} | {t['ours'] * 1e3:.1f} | {t['plain'] * 1e3:.1f} | "
                  f"{t['tv'] * 1e3:.1f} | {t['ours'] / t['tv']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
