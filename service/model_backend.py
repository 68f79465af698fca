"""Backend implementation over model.runtimes (torch, TorchScript or ONNX Runtime). With the
ONNX Runtime backend nothing here imports torch."""
import ctypes
import ctypes.util
import gc
import os
import sys
from typing import Any, List, Optional, Sequence

import numpy as np

from model.detector.checkpoint import DEFAULT_CHECKPOINT
from model.inference import sampling
from model.inference.runtime import DeviceOutOfMemory
from model.inference.sampling import render_sampling_points
from model.runtimes.loading import load_runtime

from .backend import Detections, Layers, OutOfMemory, TooDeep


class ModelBackend:
    def __init__(self, kind: str, checkpoint: Optional[str], device: str,
                 cache_dir: Optional[str] = None, threads: int = 0, tta: int = 1) -> None:
        self.detector = load_runtime(kind, checkpoint, device, cache_dir, threads)
        runtime = self.detector.runtime
        self.name, self.device, self.tta = runtime.kind, runtime.device, tta  # auto resolved
        self.model_name = os.path.basename(checkpoint or DEFAULT_CHECKPOINT)
        self.classes = list(self.detector.config.get("classes", []))

    def count_tiles(self, height: int, width: int) -> int:
        return self.detector.count_tiles(height, width, self.tta)

    def plan(self, image: np.ndarray):
        return self.detector.plan([image], self.tta)

    def run_tiles(self, tiles: Sequence[Any]) -> List[Any]:
        try:
            return self.detector.run_tiles(tiles)
        except DeviceOutOfMemory as e:  # the runtime has released what it could
            raise OutOfMemory(f"out of device memory for {len(tiles)} tiles") from e

    def merge(self, plan, outputs: Sequence[Any], score_threshold: float,
              max_detections: int) -> Detections:
        return self.detector.merge(plan, outputs, score_threshold, max_detections)[0]

    def predict(self, images: List[np.ndarray], score_threshold: float,
                max_detections: int) -> List[Detections]:
        return self.detector.predict(images, score_threshold=score_threshold,
                                     max_detections=max_detections, tta=self.tta)

    def sampling_points(self, image: np.ndarray, x: float, y: float,
                        depth: Optional[int] = None) -> Layers:
        try:
            return self.detector.sampling_points(image, x, y, depth)
        except sampling.TooDeep as e:
            raise TooDeep(str(e)) from None

    def render(self, image: np.ndarray, layers: Layers, x: float, y: float) -> bytes:
        return render_sampling_points(image, layers, x, y)

    def warmup(self) -> None:
        size = self.detector.tile_size
        ramp = np.linspace(0, 255, size * size * 3).astype(np.uint8).reshape(size, size, 3)
        self.predict([ramp], 0.5, 10)


    def close(self) -> None:
        """Drops the runtime and hands its memory back to the system."""
        self.detector = None
        gc.collect()
        if "torch" in sys.modules and self.device == "cuda":
            sys.modules["torch"].cuda.empty_cache()
        libc = ctypes.util.find_library("c")
        if libc and sys.platform.startswith("linux"):  # glibc keeps freed arenas otherwise
            ctypes.CDLL(libc).malloc_trim(0)


def load_backend(settings, checkpoint: Optional[str] = None) -> ModelBackend:
    """The backend for `checkpoint` (default: the configured one) with the runtime, device and
    threads the service settings describe (loads and, if needed, exports the model)."""
    return ModelBackend(settings.backend, checkpoint or settings.checkpoint, settings.device,
                        settings.cache_dir, settings.threads, settings.tta)
