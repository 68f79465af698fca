"""CPU speed of dcn::deform_conv2d (float32) against dense conv2d, torchvision's deform_conv2d
and ONNX Runtime's native DeformConv (opset 19), all timed in one run (ratios < 1: ours faster).

    python benchmarks/deform_conv2d.py [--threads 2] [--rounds 30]
"""
import os
import sys

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cases import SHAPES, deform_conv_model  # noqa: E402
from timing import compare, op_benchmark_args  # noqa: E402

from model import ops  # noqa: E402


def ort_deform_conv(shape, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # Idle ORT threads must not spin while the torch calls interleaved with them run.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(deform_conv_model(shape), so, providers=["CPUExecutionProvider"])


def main():
    args = op_benchmark_args(__doc__, rounds=30)
    print(f"deform_conv2d, CPU float32, {args.threads} threads, best of {args.rounds} "
          "interleaved runs (times in ms)")
    header = ("shape (N,Cin,Cout,H,W,k)", "ours", "dense", "ours/dense", "ORT", "ours/ORT",
              "vs torchvision", "ours f+b", "dense f+b", "f+b ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for shape in SHAPES:
        n, c, co, h, w, k = shape
        x = torch.randn(n, c, h, w)
        weight = torch.randn(co, c, k, k) * 0.05
        bias = torch.randn(co)
        offset = torch.randn(n, 2 * k * k, h, w)
        sess = ort_deform_conv(shape, args.threads)
        feeds = {"X": x.numpy(), "W": weight.numpy(), "offset": offset.numpy(),
                 "B": bias.numpy()}
        with torch.no_grad():
            fwd = compare({
                "ours": lambda: ops.deform_conv2d(x, offset, weight, bias, padding=1),
                "dense": lambda: F.conv2d(x, weight, bias, padding=1),
                "ort": lambda: sess.run(None, feeds),
            }, rounds=args.rounds)
            tv = compare({"tv": lambda: torchvision.ops.deform_conv2d(
                x, offset, weight, bias, padding=1)}, rounds=max(3, args.rounds // 10))["tv"]
            ours_np = ops.deform_conv2d(x, offset, weight, bias, padding=1).numpy()
            assert np.allclose(ours_np, sess.run(None, feeds)[0], atol=1e-3, rtol=1e-3)

        xg, wg, og = (t.clone().requires_grad_() for t in (x, weight, offset))
        grad = torch.randn(n, co, h, w)

        def ours_fb():
            ops.deform_conv2d(xg, og, wg, bias, padding=1).backward(grad)

        def dense_fb():
            F.conv2d(xg, wg, bias, padding=1).backward(grad)

        fb = compare({"ours": ours_fb, "dense": dense_fb}, rounds=args.rounds)
        ms = lambda t: f"{t * 1e3:.2f}"  # noqa: E731
        print(f"| {shape} | {ms(fwd['ours'])} | {ms(fwd['dense'])} | "
              f"{fwd['ours'] / fwd['dense']:.2f}x | {ms(fwd['ort'])} | "
              f"{fwd['ours'] / fwd['ort']:.2f}x | {tv / fwd['ours']:.1f}x faster | "
              f"{ms(fb['ours'])} | {ms(fb['dense'])} | {fb['ours'] / fb['dense']:.2f}x |")


if __name__ == "__main__":
    main()
