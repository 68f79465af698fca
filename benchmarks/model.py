"""Detector throughput (images/s) on 400x400 crops at batch 1, 4 and 8: the DCN model against
its plain ablation (deformable layers' overhead), and eager vs TorchScript vs ONNX Runtime.

    python benchmarks/model.py [--rounds 5]
"""
import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from timing import compare  # noqa: E402

import onnx_plugins  # noqa: E402
from model.detector.zoo import build_model, load_model  # noqa: E402
from model.runtimes.export import export_onnx  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    dcn, config = load_model()
    dcn.eval()
    plain_arch = dict(config["architecture"], deformable=False)
    plain = build_model(plain_arch, pretrained_backbone=False).eval()
    scripted = torch.jit.script(dcn)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d.onnx")
        export_onnx(dcn, path, 400)
        session = onnx_plugins.session(path)
        print(f"detector images/s, 400x400, CPU, {torch.get_num_threads()} threads, best of "
              f"{args.rounds}")
        print("| batch | DCN eager | plain eager | DCN/plain time | TorchScript | ONNX Runtime |")
        print("|---|---|---|---|---|---|")
        for batch in (1, 4, 8):
            images = [torch.rand(3, 400, 400) for _ in range(batch)]
            with torch.no_grad():
                t = compare({
                    "dcn": lambda: dcn(images),
                    "plain": lambda: plain(images),
                    "ts": lambda: scripted(images),
                    # the exported graph takes one image: a batch is `batch` runs
                    "ort": lambda: [session.run(None, {"image": im.numpy()}) for im in images],
                }, rounds=args.rounds, warmup=1)
            ips = {k: batch / v for k, v in t.items()}
            print(f"| {batch} | {ips['dcn']:.2f} | {ips['plain']:.2f} | "
                  f"{t['dcn'] / t['plain']:.2f}x | {ips['ts']:.2f} | {ips['ort']:.2f} |")


if __name__ == "__main__":
    main()
