"""The runtime interface: what the tiled detector (model.inference.tiling) needs from a detector
runtime, and the folder format of exported runtimes. NumPy only.

A runtime has `kind` ("torch" | "torchscript" | "onnxruntime"), `device` ("cpu" | "cuda"),
`config` (the checkpoint config), `layers` (geometry of the deformable layers, see
model.probe.layer_meta), and:

    run(tiles: list of [3, h, w] float32 in [0, 1]) -> list of {"boxes" [D, 4] x1y1x2y2 tile
        pixels float32, "scores" [D] float32, "labels" [D] int64}; DeviceOutOfMemory when the
        batch does not fit
    probe(image [3, H, W] float32 in [0, 1]) -> [offset_0 [1, 2*G*K, H0, W0], mask_0
        [1, G*K, H0, W0], offset_1, mask_1, ...] for the whole image (see model.detector.probe)

Implementations: model.runtimes.pytorch (eager, TorchScript), model.runtimes.ort (ONNX Runtime).
An exported runtime is a folder: the detector (`detector.pt` / `detector.onnx`), its probe
(`probe.pt` / `probe.onnx`) and `runtime.json` {"format", "kind", "config", "layers"}.
"""
import json
import os
from typing import Any, Dict, List, Protocol

import numpy as np

FORMAT = "dcnserve-runtime/3"  # 3: the box head's fc6 runs per FPN level inside the pooler


class DeviceOutOfMemory(MemoryError):
    """A batch of tiles did not fit in device memory; the runtime has released what it could,
    so a smaller batch may be tried."""


class Runtime(Protocol):
    kind: str
    device: str
    config: Dict[str, Any]
    layers: List[Dict[str, Any]]

    def run(self, tiles: List[np.ndarray]) -> List[Dict[str, np.ndarray]]: ...

    def probe(self, image: np.ndarray) -> List[np.ndarray]: ...


def write_runtime_meta(directory: str, kind: str, config: Dict[str, Any],
                       layers: List[Dict[str, Any]]) -> None:
    with open(os.path.join(directory, "runtime.json"), "w") as f:
        json.dump({"format": FORMAT, "kind": kind, "config": config, "layers": layers}, f,
                  indent=1)


def read_runtime_meta(directory: str, kind: str) -> Dict[str, Any]:
    """runtime.json of an exported `kind` runtime; ValueError if the folder is not one."""
    path = os.path.join(directory, "runtime.json")
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT or meta.get("kind") != kind:
        raise ValueError(f"{path} is not a {kind} runtime of format {FORMAT}")
    return meta
