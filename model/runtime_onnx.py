"""The ONNX Runtime runtime of the detector (an exported folder, see model.export), with the dcn
custom-op library. Implements model.runtimes.Runtime without importing torch."""
import os
from typing import Dict, List

import numpy as np

import onnx_plugins

from .runtime import DeviceOutOfMemory, read_runtime_meta


class OnnxRuntimeRuntime:
    """`detector.onnx` (one [3, h, w] image in; boxes, labels, scores out) and `probe.onnx`
    (model.probe.ImageProbe: image in, offsets and masks out); the CUDA execution provider when
    device is "cuda". threads: intra-op threads (0: ONNX Runtime's default)."""

    kind = "onnxruntime"

    def __init__(self, directory: str, device: str = "cpu", threads: int = 0) -> None:
        import onnxruntime as ort

        meta = read_runtime_meta(directory, self.kind)
        self.config, self.device, self.layers = meta["config"], str(device), meta["layers"]
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda"
                     else ["CPUExecutionProvider"])

        def open_session(name: str):
            options = ort.SessionOptions()
            options.intra_op_num_threads = int(threads)
            return onnx_plugins.session(os.path.join(directory, name), providers, options)

        self.session = open_session("detector.onnx")
        self.probe_session = open_session("probe.onnx")

    def run(self, tiles: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        out = []
        for tile in tiles:  # the exported graph takes one image
            try:
                boxes, labels, scores = self.session.run(None, {"image": tile})
            except Exception as e:  # ONNX Runtime reports allocator failures as plain errors
                if "Failed to allocate memory" in str(e):
                    raise DeviceOutOfMemory(f"out of device memory for a tile: {e}") from e
                raise
            out.append({"boxes": boxes, "labels": labels, "scores": scores})
        return out

    def probe(self, image: np.ndarray) -> List[np.ndarray]:
        return self.probe_session.run(None, {"image": image})
