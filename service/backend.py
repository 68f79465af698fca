"""The interface between the HTTP layer and a detector runtime. Imports nothing of the service
or the model: the implementation is service.model_backend (`load_backend`)."""
from typing import Any, Dict, List, Protocol

import numpy as np

Detections = Dict[str, np.ndarray]  # boxes [D, 4] x1y1x2y2, scores [D], labels [D]
# per deformable layer, top first: {"layer", "points" [n, 2], "weights" [n]}
Layers = List[Dict[str, Any]]


class Backend(Protocol):
    name: str          # "torch" | "torchscript" | "onnxruntime"
    device: str        # "cpu" | "cuda"
    model_name: str    # e.g. "dcn_mobilenet_v2_fpn_trees"
    classes: List[str]

    def predict(self, images: List[np.ndarray], score_threshold: float,
                max_detections: int) -> List[Detections]:
        """Detections for a batch of [H, W, 3] uint8 images of any sizes."""

    def sampling_points(self, image: np.ndarray, x: float, y: float) -> Layers:
        """Composed sampling locations of the deformable layers for image point (x, y)."""

    def render(self, image: np.ndarray, layers: Layers, x: float, y: float) -> bytes:
        """PNG of the image with the given layers' points drawn."""

    def warmup(self) -> None:
        """Runs the model once so the first request is not slow."""
