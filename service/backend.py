"""The interface between the HTTP layer and a detector runtime. Imports nothing of the service
or the model: the implementation is service.model_backend (`load_backend`).

A request's work is a plan of tiles: the worker (service.batcher) runs tiles of several requests
in model batches, interleaved, and merges each request's outputs when its last tile has run.
"""
from typing import Any, Dict, List, Optional, Protocol, Sequence

import numpy as np

Detections = Dict[str, np.ndarray]  # boxes [D, 4] x1y1x2y2, scores [D], labels [D]
# per deformable layer, top first: {"layer", "points" [n, 2], "weights" [n]}
Layers = List[Dict[str, Any]]


class OutOfMemory(Exception):
    """The device ran out of memory for a batch of tiles (its memory has been released)."""


class TooDeep(ValueError):
    """More deformable layers were asked to be composed than the point limit allows."""


class Plan(Protocol):
    tiles: Sequence[Any]  # the tiles of one image, in run order


class Backend(Protocol):
    name: str          # "torch" | "torchscript" | "onnxruntime"
    device: str        # "cpu" | "cuda"
    model_name: str    # e.g. "dcn_mobilenet_v2_fpn_trees"
    classes: List[str]

    def count_tiles(self, height: int, width: int) -> int:
        """Model runs (views x tiles) an image of this size costs; no pixel work."""

    def plan(self, image: np.ndarray) -> Plan:
        """The tiles of one [H, W, 3] uint8 image."""

    def run_tiles(self, tiles: Sequence[Any]) -> List[Any]:
        """One model batch: a raw output per tile. Raises OutOfMemory when the device is full."""

    def merge(self, plan: Plan, outputs: Sequence[Any], score_threshold: float,
              max_detections: int) -> Detections:
        """The image's detections from the outputs of all of its tiles."""

    def sampling_points(self, image: np.ndarray, x: float, y: float,
                        depth: Optional[int] = None) -> Layers:
        """Composed sampling locations of the top `depth` deformable layers (default: as many
        as the point limit allows) for image point (x, y). Raises TooDeep past that limit."""

    def render(self, image: np.ndarray, layers: Layers, x: float, y: float) -> bytes:
        """PNG of the image with the given layers' points drawn."""

    def warmup(self) -> None:
        """Runs the model once so the first request is not slow."""
