"""The tiled detector: tiling, test-time augmentation and merging over any runtime (NumPy only).

    detector = TiledDetector(runtime)  # a model.inference.runtime.Runtime: eager, TorchScript, ORT
    [result] = detector.predict([image], score_threshold=0.3, max_detections=500)
    # per image: {"boxes": [D, 4] x1y1x2y2 in image pixels, "scores": [D], "labels": [D]}

Images larger than the tile size (from the checkpoint config) are cut into overlapping tiles
whose detections are merged by NMS, so a 1249 x 1035 aerial photo is seen at full resolution.
A whole-image model (config "tile": {"whole_image": true}, e.g. an imported mmdetection
detector that resizes every image itself) gets each image as one tile per view.
`predict` is `plan` + `run_tiles` in batches + `merge`; a server can call the three itself to
interleave the tiles of several requests (`count_tiles` prices a request before any pixel work).
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import tta as augment
from .boxes import batched_nms
from .mmdet_preprocess import padded_size, rescale_size
from .sampling import checked_depth, compose

Detections = Dict[str, np.ndarray]


def as_chw(image) -> np.ndarray:
    """[H, W, 3] uint8 array, or [3, H, W] float in [0, 1] (array or tensor) -> [3, H, W]
    float32."""
    if hasattr(image, "detach"):  # a torch tensor, taken without importing torch
        return np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {array.shape}")
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def tile_origins(length: int, size: int, overlap: float) -> List[int]:
    """Start offsets of tiles of `size` covering [0, length) with the given overlap fraction."""
    if length <= size:
        return [0]
    stride = max(1, int(size * (1 - overlap)))
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


def network_size(height: int, width: int, min_size: int, max_size: int,
                 divisible: int = 32) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """What torchvision's detection transform makes of a height x width image: (resized (h, w),
    padded network input (h, w)). Same float32 scale and rounding as GeneralizedRCNNTransform."""
    scale = min(np.float32(min_size) / np.float32(min(height, width)),
                np.float32(max_size) / np.float32(max(height, width)))
    resized = (math.floor(height * float(scale)), math.floor(width * float(scale)))
    padded = tuple(int(math.ceil(s / divisible) * divisible) for s in resized)
    return resized, padded


def mmcv_network_size(height: int, width: int, long_edge: int = 1333, short_edge: int = 800,
                      divisible: int = 32) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """What mmdetection's keep-ratio Resize + padding makes of a height x width image: (resized
    (h, w), padded network input (h, w)); mmcv.rescale_size's double-precision scale and
    rounding."""
    resized = rescale_size(height, width, long_edge, short_edge)
    return resized, padded_size(*resized, divisible)


@dataclass
class TilePlan:
    """The tiles of a batch of images. tiles[i]: [3, h, w] float32, view-transformed, in run
    order; owners[i]: (placement index, view); placed[k]: (image index, x0, y0, height, width)."""
    n_images: int
    n_views: int
    tiles: List[np.ndarray] = field(default_factory=list)
    owners: List[Tuple[int, int]] = field(default_factory=list)
    placed: List[Tuple[int, int, int, int, int]] = field(default_factory=list)


class TiledDetector:
    """Tiled detection and offset probing over one runtime (see model.inference.runtime.Runtime)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.config: Dict[str, Any] = runtime.config
        self.layers: List[Dict[str, Any]] = runtime.layers
        tile = self.config.get("tile", {})
        self.tile_size = int(tile.get("size", 400))
        self.tile_overlap = float(tile.get("overlap", 0.25))
        self.nms_iou = float(tile.get("nms_iou", 0.4))
        self.tta_iou = float(tile.get("tta_iou", 0.4))
        self.whole_image = bool(tile.get("whole_image", False))

    def _tile_size(self, height: int, width: int) -> int:
        return max(height, width, 1) if self.whole_image else self.tile_size

    def count_tiles(self, height: int, width: int, tta: int = 1) -> int:
        """Model runs (views x tiles) one height x width image costs; no pixel work."""
        size = self._tile_size(height, width)
        rows = tile_origins(height, size, self.tile_overlap)
        columns = tile_origins(width, size, self.tile_overlap)
        return len(augment.views(tta)) * len(rows) * len(columns)

    def plan(self, images: Sequence, tta: int = 1) -> TilePlan:
        """Cuts images ([H, W, 3] uint8 or [3, H, W] float) into view-transformed tiles."""
        views = augment.views(tta)
        plan = TilePlan(len(images), len(views))
        for i, image in enumerate(images):
            pixels = as_chw(image)
            h, w = pixels.shape[1:]
            size = self._tile_size(h, w)
            for y0 in tile_origins(h, size, self.tile_overlap):
                for x0 in tile_origins(w, size, self.tile_overlap):
                    tile = pixels[:, y0:y0 + size, x0:x0 + size]
                    for v in views:
                        plan.tiles.append(augment.transform(tile, v))
                        plan.owners.append((len(plan.placed), v))
                    plan.placed.append((i, x0, y0) + tuple(tile.shape[1:]))
        return plan

    def run_tiles(self, tiles: List[np.ndarray]) -> List[Detections]:
        """One model batch: raw detections per tile (boxes in the tile's own pixels)."""
        return self.runtime.run(tiles)

    def merge(self, plan: TilePlan, outputs: List[Detections], score_threshold: float,
              max_detections: int) -> List[Detections]:
        """Per image of the plan, its detections from `outputs` (one per plan tile, in order):
        views fused, tiles shifted to image pixels and merged, filtered, best first."""
        if len(outputs) != len(plan.tiles):
            raise ValueError(f"{len(outputs)} outputs for {len(plan.tiles)} tiles")
        seen = [[] for _ in plan.placed]
        for out, (k, v) in zip(outputs, plan.owners):
            boxes = augment.invert_boxes(out["boxes"], v, plan.placed[k][3], plan.placed[k][4])
            seen[k].append((boxes, out["scores"], out["labels"]))
        per_image = [[] for _ in range(plan.n_images)]
        for (i, x0, y0, _, _), parts in zip(plan.placed, seen):
            boxes, scores, labels = augment.fuse(*(np.concatenate(p) for p in zip(*parts)),
                                                 n_views=plan.n_views, iou=self.tta_iou)
            shift = np.array([x0, y0, x0, y0], dtype=boxes.dtype)
            per_image[i].append((boxes + shift, scores, labels))
        return [self._merge(parts, score_threshold, max_detections) for parts in per_image]

    def predict(self, images: Sequence, score_threshold: float = 0.3, max_detections: int = 300,
                batch_size: int = 8, tta: int = 1) -> List[Detections]:
        """Per image {"boxes" [D, 4] x1y1x2y2 in image pixels, "scores" [D], "labels" [D]}, best
        first. tta: views per tile (1, 2, 4 or 8 flips/transpositions, fused; see
        model.inference.tta), costing that many model runs."""
        plan = self.plan(images, tta)
        outputs = []
        for s in range(0, len(plan.tiles), batch_size):
            outputs.extend(self.run_tiles(plan.tiles[s:s + batch_size]))
        return self.merge(plan, outputs, score_threshold, max_detections)

    def sampling_points(self, image, x: float, y: float,
                        depth: Optional[int] = None) -> List[Dict[str, Any]]:
        """Composed sampling locations of the top `depth` deformable layers (default: as many
        as model.inference.sampling.compose allows) for image point (x, y); `image` as for
        `plan`, seen whole (not tiled). Raises sampling.TooDeep for a depth past that."""
        pixels = as_chw(image)
        arch = self.config.get("architecture", {})
        if "preprocessing" in self.config:  # mmcv's keep-ratio resize (an imported model)
            pre = self.config["preprocessing"]
            (resized_h, _), (input_h, _) = mmcv_network_size(
                pixels.shape[1], pixels.shape[2], *pre["scale"], pre["size_divisor"])
        else:
            (resized_h, _), (input_h, _) = network_size(
                pixels.shape[1], pixels.shape[2], int(arch.get("min_size", 800)),
                int(arch.get("max_size", 1333)))
        checked_depth(self.layers, depth)  # before the probe runs
        return compose(self.layers, self.runtime.probe(pixels), input_h,
                       resized_h / pixels.shape[1], x, y, depth)

    def _merge(self, parts, score_threshold: float, max_detections: int) -> Detections:
        boxes, scores, labels = (np.concatenate([p[j] for p in parts]) for j in range(3))
        if len(parts) > 1:  # tiles overlap: the same crown may be found twice
            keep = batched_nms(boxes, scores, labels, self.nms_iou)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = scores >= score_threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        order = np.argsort(-scores, kind="stable")[:max_detections]
        return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}
