"""Writes a Triton Inference Server model repository for a detector checkpoint.

    python -m model.triton [--checkpoint STEM] --out model_repository/ \\
        [--op-library PATH] [--bundle-library] [--max-batch-size 4] [--instances 1]

Layout: <out>/<name>/config.pbtxt and <out>/<name>/1/model.onnx
(model.runtimes.export.TileBatch: uint8 tiles [B, S, S, 3] in; boxes, scores, labels, count
out), served by Triton's `onnxruntime` backend with our op library loaded through
`model_operations { op_library_filename }`, dynamic batching and a GPU instance group.
A whole-image model (an imported mmdetection detector, config "tile": {"whole_image": true}) is
written unbatched (max_batch_size 0): its graph starts at the network input ("input" [1, 3, H, W],
"image_size" [2], "box_scale" [2]), which a client makes with
model.inference.mmdet_preprocess.preprocess, and returns that image's boxes, labels and scores.
`--op-library` is the library's path as Triton sees it; `--bundle-library` copies the built CUDA
library into <out>/lib/ and points the config there (mount <out> at the same path in the Triton
container).
"""
import argparse
import os
import shutil
from typing import Dict, List, Optional

from model.detector.zoo import load_model
from onnx_plugins import library_path

from .export import export_network_input_onnx, export_tile_batch_onnx

ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 7: "TYPE_INT64", 10: "TYPE_FP16",
                  11: "TYPE_FP64", 6: "TYPE_INT32"}


def _tensor(name: str, data_type: str, dims: List[int]) -> str:
    return (f"  {{\n    name: \"{name}\"\n    data_type: {data_type}\n"
            f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}")


def config_text(name: str, onnx_path: str, max_batch_size: int, op_library: str,
                instances: int, max_queue_delay_us: int) -> str:
    """config.pbtxt for the ONNX graph at `onnx_path`, inputs/outputs read from the graph (its
    first dimension is the batch, unless max_batch_size is 0: no batching)."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph

    def entries(values) -> str:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            dims = dims[1:] if max_batch_size else dims
            out.append(_tensor(v.name, ONNX_TO_TRITON[t.elem_type], dims))
        return ",\n".join(out)

    batching = f"""dynamic_batching {{
  preferred_batch_size: [ {max_batch_size} ]
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
""" if max_batch_size else ""
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
{entries(graph.input)}
]
output [
{entries(graph.output)}
]
{batching}instance_group [
  {{
    count: {instances}
    kind: KIND_GPU
  }}
]
model_operations {{
  op_library_filename: "{op_library}"
}}
"""


def write_repository(out: str, checkpoint: Optional[str] = None, name: str = "dcn_detector",
                     max_batch_size: int = 4, max_detections: int = 300, instances: int = 1,
                     op_library: Optional[str] = None, bundle_library: bool = False,
                     max_queue_delay_us: int = 5000) -> Dict[str, str]:
    """Writes the repository; returns the paths of the config, the model and the op library."""
    model, config = load_model(checkpoint)
    version_dir = os.path.join(out, name, "1")
    os.makedirs(version_dir, exist_ok=True)
    model_path = os.path.join(version_dir, "model.onnx")
    size = int(config.get("tile", {}).get("size", 400))
    if config.get("tile", {}).get("whole_image"):
        export_network_input_onnx(model, model_path, size)
        max_batch_size = 0
    else:
        export_tile_batch_onnx(model, size, model_path, max_batch_size, max_detections)
    if bundle_library:
        os.makedirs(os.path.join(out, "lib"), exist_ok=True)
        target = os.path.join(out, "lib", "libdcn_ort_cuda.so")
        shutil.copy2(library_path(cuda=True), target)
        op_library = op_library or os.path.abspath(target)
    if op_library is None:
        try:
            op_library = library_path(cuda=True)
        except FileNotFoundError:
            op_library = library_path(cuda=False)
    config_path = os.path.join(out, name, "config.pbtxt")
    with open(config_path, "w") as f:
        f.write(config_text(name, model_path, max_batch_size, op_library, instances,
                            max_queue_delay_us))
    return {"config": config_path, "model": model_path, "op_library": op_library}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m model.triton", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="checkpoint stem (default: the shipped model)")
    ap.add_argument("--out", required=True, help="model repository folder")
    ap.add_argument("--name", default="dcn_detector")
    ap.add_argument("--max-batch-size", type=int, default=4)
    ap.add_argument("--max-detections", type=int, default=300, help="per tile (output K)")
    ap.add_argument("--instances", type=int, default=1, help="model instances per GPU")
    ap.add_argument("--op-library", help="libdcn_ort path inside the Triton container "
                                         "(default: this build's library)")
    ap.add_argument("--bundle-library", action="store_true",
                    help="copy libdcn_ort_cuda.so into <out>/lib and reference it there")
    args = ap.parse_args(argv)
    paths = write_repository(args.out, args.checkpoint, args.name, args.max_batch_size,
                             args.max_detections, args.instances, args.op_library,
                             args.bundle_library)
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))


if __name__ == "__main__":
    main()
