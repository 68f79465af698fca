"""Exports of a detector checkpoint: TorchScript and ONNX (with the `dcn` custom ops).

    python -m model.export [--checkpoint STEM] --torchscript detector.pt --onnx detector.onnx

TorchScript loads with `torch.jit.load` once `model.ops` is imported (it registers the ops); the
ONNX graph runs in ONNX Runtime with `onnx_plugins.session(path)`. Both take one image
[3, H, W] float in [0, 1] (ONNX: input "image", outputs "boxes", "labels", "scores"); tiling of
large images stays in `model.inference.Detector`.
"""
import argparse
from typing import List, Optional

import torch

from .inference import Detector, load_detector


def export_torchscript(detector: Detector, path: str) -> None:
    torch.jit.script(detector.model.eval()).save(path)


def export_onnx(detector: Detector, path: str, example: Optional[torch.Tensor] = None) -> None:
    from onnx_plugins.export import export

    size = detector.tile_size
    example = example if example is not None else torch.rand(3, size, size)
    export(detector.model.eval(), ([example],), path, ["image"], ["boxes", "labels", "scores"],
           {"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
            "labels": {0: "detections"}, "scores": {0: "detections"}})


def main(argv: List[str] = None) -> None:
    ap = argparse.ArgumentParser(description="export a detector checkpoint")
    ap.add_argument("--checkpoint", default=None, help="checkpoint stem (default: shipped model)")
    ap.add_argument("--torchscript")
    ap.add_argument("--onnx")
    args = ap.parse_args(argv)
    detector = load_detector(args.checkpoint)
    if args.torchscript:
        export_torchscript(detector, args.torchscript)
    if args.onnx:
        export_onnx(detector, args.onnx)


if __name__ == "__main__":
    main()
