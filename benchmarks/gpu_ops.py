"""GPU speed of dcn::deform_conv2d and dcn::deform_roi_pool (CUDA events, median of --reps
calls): ours against torchvision's CUDA ops and a dense cuDNN convolution of the same size, in
float32, float16 and bfloat16, forward and forward+backward; and the host synchronisations per
call (stalls). Targets (issue 16): forward >= 1.5x torchvision on every shape; float16 >= 1.8x
float32 on the large shape.

    python benchmarks/gpu_ops.py [--reps 20] [--json figures.json]
    python benchmarks/gpu_ops.py --device cpu --quick     # dry run of the script itself
"""
import os
import sys

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cases import SHAPES  # noqa: E402
from gpu_timing import gpu_benchmark_args, median_ms, synchronizations, write_json  # noqa: E402

from model import ops  # noqa: E402

LARGE = (8, 256, 256, 64, 64, 3)
QUICK_SHAPE = (1, 8, 8, 12, 12, 3)


def conv_inputs(shape, device, dtype):
    n, c, co, h, w, k = shape
    like = {"device": device, "dtype": dtype}
    return (torch.randn(n, c, h, w, **like), torch.randn(n, 2 * k * k, h, w, **like),
            torch.randn(co, c, k, k, **like) * 0.05, torch.randn(co, **like))


def conv_impls(x, offset, weight, bias):
    """forward callables: ours, torchvision, dense (the same conv without offsets, cuDNN)."""
    return {
        "ours": lambda: ops.deform_conv2d(x, offset, weight, bias, padding=(1, 1)),
        "torchvision": lambda: torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1),
        "dense": lambda: F.conv2d(x, weight, bias, padding=1),
    }


def forward_backward(forward, leaves):
    def run():
        out = forward()
        torch.autograd.grad(out, leaves, torch.ones_like(out))
    return run


def time_or_none(fn, args):
    """Milliseconds, or None where the op does not support the dtype (torchvision: no bfloat16)."""
    try:
        return median_ms(fn, args.device, args.reps, args.warmup)
    except (RuntimeError, NotImplementedError):
        return None


def deform_conv2d_rows(args, shapes, dtypes):
    rows = []
    for dtype in dtypes:
        for shape in shapes:
            x, offset, weight, bias = conv_inputs(shape, args.device, dtype)
            leaves = [t.requires_grad_() for t in (x, offset, weight)]
            for pass_name in ("forward", "forward+backward"):
                impls = conv_impls(x, offset, weight, bias)
                if pass_name == "forward":
                    with torch.no_grad():
                        ms = {k: time_or_none(f, args) for k, f in impls.items()}
                else:
                    ms = {k: time_or_none(forward_backward(
                              f, leaves if k != "dense" else [x, weight]), args)
                          for k, f in impls.items()}
                rows.append({"op": "deform_conv2d", "shape": list(shape),
                             "dtype": str(dtype).replace("torch.", ""), "pass": pass_name, **ms})
    return rows


def roi_pool_rows(args, dtypes):
    n, c, h, w, n_rois = (1, 8, 16, 16, 4) if args.quick else (2, 256, 64, 64, 512)
    rows = []
    for dtype in dtypes:
        like = {"device": args.device, "dtype": dtype}
        x = torch.randn(n, c, h, w, **like, requires_grad=True)
        xy = torch.rand(n_rois, 2) * 8 * w * 0.8  # image pixels; the map is at scale 1/8
        wh = torch.rand(n_rois, 2) * 8 * w * 0.3 + 8
        rois = torch.cat([torch.randint(0, n, (n_rois, 1)).float(), xy, xy + wh], 1).to(**like)
        offset = (torch.randn(n_rois, 2, 7, 7) * 0.1).to(**like).requires_grad_()
        impls = {"ours": lambda: ops.deform_roi_pool(x, rois, offset, (7, 7), 1 / 8, 2),
                 "torchvision roi_align": lambda: torchvision.ops.roi_align(
                     x, rois, (7, 7), 1 / 8, 2, aligned=True)}
        with torch.no_grad():
            fwd = {k: time_or_none(f, args) for k, f in impls.items()}
        fb = {k: time_or_none(forward_backward(f, [x]), args) for k, f in impls.items()}
        label = f"N={n} C={c} {h}x{w}, {n_rois} RoIs, 7x7"
        dt = str(dtype).replace("torch.", "")
        for pass_name, ms in (("forward", fwd), ("forward+backward", fb)):
            rows.append({"op": "deform_roi_pool", "shape": label, "dtype": dt, "pass": pass_name,
                         **ms})
    return rows


def stall_counts(args):
    """Host synchronisations per call of each op (float32, the first shape)."""
    x, offset, weight, bias = conv_inputs(QUICK_SHAPE, args.device, torch.float32)
    leaves = [t.requires_grad_() for t in (x, offset, weight)]
    conv = conv_impls(x, offset, weight, bias)["ours"]
    rois = torch.tensor([[0, 1.0, 1.0, 9.0, 9.0]], device=args.device)
    return {
        "deform_conv2d forward": synchronizations(conv, args.device),
        "deform_conv2d forward+backward": synchronizations(forward_backward(conv, leaves),
                                                           args.device),
        "deform_roi_pool forward": synchronizations(
            lambda: ops.deform_roi_pool(x, rois, None, (3, 3), 1.0, 2), args.device),
    }


def fmt(v):
    return "n/a" if v is None else f"{v:.3f}"


def main():
    args = gpu_benchmark_args(__doc__)
    shapes = [QUICK_SHAPE] if args.quick else SHAPES + [LARGE]
    dtypes = ([torch.float32] if args.quick
              else [torch.float32, torch.float16, torch.bfloat16])
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"dcn ops on {where}, median of {args.reps} calls (ms); speed-up = torchvision / ours")
    rows = deform_conv2d_rows(args, shapes, dtypes) + roi_pool_rows(args, dtypes)
    print("| op | shape | dtype | pass | ours | torchvision | dense conv | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        tv = r.get("torchvision", r.get("torchvision roi_align"))
        r["speedup_vs_torchvision"] = tv / r["ours"] if tv and r["ours"] else None
        print(f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['pass']} | {fmt(r['ours'])} | "
              f"{fmt(tv)} | {fmt(r.get('dense'))} | {fmt(r['speedup_vs_torchvision'])}x |")
    large = {r["dtype"]: r["ours"] for r in rows if r["op"] == "deform_conv2d"
             and r["pass"] == "forward" and r["shape"] == list(shapes[-1])}
    half_gain = large["float32"] / large["float16"] if large.get("float16") else None
    stalls = stall_counts(args)
    print(f"float16 / float32 forward on {shapes[-1]}: {fmt(half_gain)}x (target >= 1.8x)")
    print("host synchronisations per call: " + ", ".join(f"{k} {v}" for k, v in stalls.items()))
    write_json(args.json, {"device": where, "reps": args.reps, "rows": rows,
                           "float16_gain_large": half_gain, "synchronizations": stalls})


if __name__ == "__main__":
    main()
