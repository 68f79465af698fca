"""Exports of a detector checkpoint: TorchScript and ONNX (with the `dcn` custom ops), and the
runtime folders that model.runtimes loads (see model.inference.runtime for their format).

    python -m model.runtimes.export [--checkpoint STEM] --torchscript detector.pt \
        --onnx detector.onnx

TorchScript loads with `torch.jit.load` once `model.ops` is imported (it registers the ops); the
ONNX graph runs in ONNX Runtime with `onnx_plugins.session(path)`. Both take one image
[3, H, W] float in [0, 1] (ONNX: input "image", outputs "boxes", "labels", "scores"); tiling of
large images stays in `model.inference.tiling.TiledDetector`.

An imported mmdetection model (config "preprocessing") is exported to ONNX from its network input
on: the legacy exporter would freeze the resize sizes of the example image into the graph, so
its preprocessing runs in NumPy before the graph (model.inference.mmdet_preprocess, bit-exact
with the torch one). Inputs "input" [1, 3, H, W], "image_size" [2] (h, w) and "box_scale" [2];
the probe takes "input".
"""
import argparse
import os
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from model.detector.probe import ImageProbe, OffsetProbe, layer_meta
from model.detector.zoo import load_model
from model.inference.runtime import write_runtime_meta
from model.ops.onnx_symbolic import export


def export_torchscript(model: nn.Module, path: str) -> None:
    torch.jit.script(model.eval()).save(path)


def export_onnx(model: nn.Module, path: str, tile_size: int = 400,
                example: Optional[torch.Tensor] = None) -> None:
    example = example if example is not None else torch.rand(3, tile_size, tile_size)
    export(model.eval(), ([example],), path, ["image"], ["boxes", "labels", "scores"],
           {"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
            "labels": {0: "detections"}, "scores": {0: "detections"}})


NETWORK_INPUTS = ["input", "image_size", "box_scale"]


def export_network_input_onnx(model: nn.Module, path: str, size: int) -> torch.Tensor:
    """An imported mmdetection model's detector graph from the network input on (inputs
    NETWORK_INPUTS; outputs boxes, labels, scores); -> the example network input."""
    from model.detector.mmdet_faster_rcnn import NetworkInputGraph

    with torch.no_grad():
        batch, box_scales = model.transform([torch.rand(3, size * 3 // 4, size)])
    h, w = batch.image_sizes[0]
    example = (batch.tensors, torch.tensor([h, w], dtype=torch.float32), box_scales[0])
    detections = {"boxes": {0: "detections"}, "labels": {0: "detections"},
                  "scores": {0: "detections"}}
    export(NetworkInputGraph(model), example, path, NETWORK_INPUTS, ["boxes", "labels", "scores"],
           {"input": {2: "height", 3: "width"}, **detections})
    return batch.tensors


def export_network_input_runtime(model: nn.Module, directory: str, size: int) -> None:
    """detector.onnx and probe.onnx of an imported mmdetection model, from the network input; no
    probe for a model without deformable layers (an ONNX graph needs an output)."""
    x = export_network_input_onnx(model, os.path.join(directory, "detector.onnx"), size)
    layers = layer_meta(model)
    if not layers:
        return
    names = [f"{what}_{i}" for i in range(len(layers)) for what in ("offset", "mask")]
    export(OffsetProbe(model), (x,), os.path.join(directory, "probe.onnx"), ["input"],
           names, {"input": {2: "height", 3: "width"}, **{n: {2: "h", 3: "w"} for n in names}})


def export_runtime(model: nn.Module, config: Dict[str, Any], kind: str, directory: str) -> str:
    """Writes the `kind` ("torchscript" | "onnxruntime") runtime folder of an eager detector."""
    os.makedirs(directory, exist_ok=True)
    model = model.cpu().eval()
    size = int(config.get("tile", {}).get("size", 400))
    image = torch.rand(3, size, size)
    layers = layer_meta(model)
    if kind == "torchscript":
        export_torchscript(model, os.path.join(directory, "detector.pt"))
        with torch.no_grad():
            batch, _ = model.transform([image])
            torch.jit.trace(OffsetProbe(model).eval(), batch.tensors, check_trace=False).save(
                os.path.join(directory, "probe.pt"))
    elif kind == "onnxruntime" and "preprocessing" in config:
        export_network_input_runtime(model, directory, size)
    elif kind == "onnxruntime":
        export_onnx(model, os.path.join(directory, "detector.onnx"), size)
        names = [f"{what}_{i}" for i in range(len(layers)) for what in ("offset", "mask")]
        export(ImageProbe(model), (image,), os.path.join(directory, "probe.onnx"), ["image"],
               names, {"image": {1: "height", 2: "width"}, **{n: {2: "h", 3: "w"} for n in names}})
    else:
        raise ValueError(f"unknown runtime {kind!r}; exportable: torchscript, onnxruntime")
    write_runtime_meta(directory, kind, config, layers)
    return directory


class TileBatch(nn.Module):
    """The detector as a batched graph with fixed-size outputs, for servers that batch requests
    themselves (Triton's dynamic batcher):

    images [B, S, S, 3] uint8 (B <= slots, S the tile size) -> boxes [B, K, 4] float (x1, y1, x2,
    y2 tile pixels), scores [B, K] float, labels [B, K] int64 (zero-padded past `count`),
    count [B, 1] int64.

    Torchvision's detection heads loop over images in Python, so the traced graph holds `slots`
    image pipelines: a batch is zero-padded to `slots` images (the backbone runs them as one
    batch) and the padding's outputs are cut off. Full batches waste nothing; a lone image costs
    as much as a full batch.
    """

    def __init__(self, model: nn.Module, slots: int, max_detections: int) -> None:
        super().__init__()
        self.model, self.slots, self.k = model.eval(), slots, max_detections

    def forward(self, images: torch.Tensor):
        x = images.permute(0, 3, 1, 2).float() / 255.0
        # Pad to `slots` images with static shapes: append `slots` blank images, keep the first.
        x = torch.cat([x, x.new_zeros((self.slots,) + x.shape[1:])])[: self.slots]
        boxes, scores, labels = [], [], []
        for out in self.model(list(x.unbind(0))):
            boxes.append(torch.cat([out["boxes"], out["boxes"].new_zeros(self.k, 4)])[: self.k])
            scores.append(torch.cat([out["scores"], out["scores"].new_zeros(self.k)])[: self.k])
            labels.append(torch.cat([out["labels"], out["labels"].new_zeros(self.k)])[: self.k])
        n = images.shape[0]
        scores_ = torch.stack(scores)[:n]
        count = (scores_ > 0).sum(1, keepdim=True)
        return torch.stack(boxes)[:n], scores_, torch.stack(labels)[:n], count


TILE_BATCH_OUTPUTS = ["boxes", "scores", "labels", "count"]


def export_tile_batch_onnx(model: nn.Module, size: int, path: str, slots: int,
                           max_detections: int) -> None:
    """TileBatch of the detector (S = `size`) as ONNX (dynamic batch dimension, dcn ops)."""
    example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    batch = {0: "batch"}
    export(TileBatch(model, slots, max_detections), (example,), path, ["images"],
           TILE_BATCH_OUTPUTS, {"images": batch, **{name: batch for name in TILE_BATCH_OUTPUTS}})
    # The exporter cannot infer the fixed output sizes through the detection heads: declare them
    # (servers such as Triton read them from the graph).
    import onnx

    graph = onnx.load(path)
    fixed = {"boxes": [max_detections, 4], "scores": [max_detections],
             "labels": [max_detections], "count": [1]}
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, value in zip(list(dims)[1:], fixed[output.name]):
            dim.ClearField("dim_param")
            dim.dim_value = value
    onnx.save(graph, path)


def main(argv: List[str] = None) -> None:
    ap = argparse.ArgumentParser(description="export a detector checkpoint")
    ap.add_argument("--checkpoint", default=None, help="checkpoint stem (default: shipped model)")
    ap.add_argument("--torchscript")
    ap.add_argument("--onnx")
    args = ap.parse_args(argv)
    model, config = load_model(args.checkpoint)
    if args.torchscript:
        export_torchscript(model, args.torchscript)
    if args.onnx:
        export_onnx(model, args.onnx, int(config.get("tile", {}).get("size", 400)))


if __name__ == "__main__":
    main()
