"""The ONNX Runtime runtime of the detector (an exported folder, see model.runtimes.export), with
the dcn custom-op library. Implements model.inference.runtime.Runtime without importing torch."""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import numpy as np

import onnx_plugins
from model.inference.mmdet_preprocess import preprocess
from model.inference.runtime import DeviceOutOfMemory, read_runtime_meta

MAX_LANES = 4  # concurrent tiles on the CPU (each holds its own activations)


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxRuntimeRuntime:
    """`detector.onnx` (one [3, h, w] image in; boxes, labels, scores out) and `probe.onnx`
    (model.detector.probe.ImageProbe: image in, offsets and masks out); the CUDA execution
    provider when device is "cuda". threads: intra-op threads (0: one per core). An imported
    mmdetection model's graphs start at the network input: its preprocessing runs here, in
    NumPy (model.inference.mmdet_preprocess).

    On the CPU the tiles of one run() call go through `lanes` concurrent single-threaded runs of
    a second session (one lane per thread, at most MAX_LANES): 13% more tiles/s than one
    session's threads on one tile at a time (16 tiles, 2 cores); a lone tile keeps every thread.
    """

    kind = "onnxruntime"

    def __init__(self, directory: str, device: str = "cpu", threads: int = 0) -> None:
        import onnxruntime as ort

        meta = read_runtime_meta(directory, self.kind)
        self.config, self.device, self.layers = meta["config"], str(device), meta["layers"]
        self.preprocessing = self.config.get("preprocessing")
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda"
                     else ["CPUExecutionProvider"])

        def open_session(name: str, intra_op_threads: int):
            options = ort.SessionOptions()
            options.intra_op_num_threads = intra_op_threads
            return onnx_plugins.session(os.path.join(directory, name), providers, options)

        self.session = open_session("detector.onnx", int(threads))
        has_probe = os.path.exists(os.path.join(directory, "probe.onnx"))  # none: no DCN layers
        self.probe_session = open_session("probe.onnx", int(threads)) if has_probe else None
        self.lanes = min(int(threads) or _cpu_cores(), MAX_LANES) if self.device != "cuda" else 1
        if self.lanes > 1:
            self.lane_session = open_session("detector.onnx", 1)
            self.lane_pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="dcn-ort-lane")

    def run(self, tiles: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        if self.lanes > 1 and len(tiles) > 1:
            return list(self.lane_pool.map(lambda t: self._run_one(self.lane_session, t), tiles))
        return [self._run_one(self.session, tile) for tile in tiles]

    def _feeds(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        if self.preprocessing is None:
            return {"image": image}
        x, size, box_scale = preprocess(image, self.preprocessing)
        return {"input": x, "image_size": size, "box_scale": box_scale}

    def _run_one(self, session, tile: np.ndarray) -> Dict[str, np.ndarray]:
        feeds = self._feeds(tile)
        try:  # the exported graph takes one image
            boxes, labels, scores = session.run(None, feeds)
        except Exception as e:  # ONNX Runtime reports allocator failures as plain errors
            if "Failed to allocate memory" in str(e):
                raise DeviceOutOfMemory(f"out of device memory for a tile: {e}") from e
            raise
        return {"boxes": boxes, "labels": labels, "scores": scores}

    def probe(self, image: np.ndarray) -> List[np.ndarray]:
        if self.probe_session is None:
            return []
        feeds = self._feeds(image)
        return self.probe_session.run(None, {k: feeds[k] for k in ("image", "input") if k in feeds})
