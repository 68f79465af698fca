"""ONNX Runtime CPU: our dcn::DeformConv2d custom op against ORT's native DeformConv (opset 19)
on the op-core shapes, float32, timed interleaved in one run (ratio < 1: ours faster).

    python benchmarks/ort.py [--threads 2] [--rounds 30]
"""
import argparse
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cases import SHAPES, deform_conv_model  # noqa: E402
from timing import compare  # noqa: E402

import onnx_plugins  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    def options():
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return so

    print(f"ONNX Runtime {ort.__version__} CPU, float32, {args.threads} threads, "
          f"best of {args.rounds} interleaved runs (ms)")
    print("| shape (N,Cin,Cout,H,W,k) | dcn::DeformConv2d | native DeformConv | ratio |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        n, c, co, h, w, k = shape
        feeds = {"X": rng.standard_normal((n, c, h, w), dtype=np.float32),
                 "W": (rng.standard_normal((co, c, k, k)) * 0.05).astype(np.float32),
                 "offset": rng.standard_normal((n, 2 * k * k, h, w), dtype=np.float32),
                 "B": rng.standard_normal(co, dtype=np.float32)}
        ours = onnx_plugins.session(deform_conv_model(shape, "DeformConv2d", "dcn"),
                                    options=options())
        native = ort.InferenceSession(deform_conv_model(shape), options(),
                                      providers=["CPUExecutionProvider"])
        assert np.allclose(ours.run(None, feeds)[0], native.run(None, feeds)[0], atol=1e-3)
        t = compare({"ours": lambda: ours.run(None, feeds),
                     "native": lambda: native.run(None, feeds)}, rounds=args.rounds)
        print(f"| {shape} | {t['ours'] * 1e3:.2f} | {t['native'] * 1e3:.2f} | "
              f"{t['ours'] / t['native']:.2f}x |")


if __name__ == "__main__":
    main()
