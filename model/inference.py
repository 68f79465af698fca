"""Inference API: build a detector from its config, load checkpoints, predict with tiling.

    detector = load_detector()                  # the shipped default model
    results = detector.predict([image, ...], score_threshold=0.3, max_detections=500)
    # per image: {"boxes": [D, 4] x1y1x2y2 in original pixels, "scores": [D], "labels": [D]}
    plan = detector.plan([image, ...])          # the same in steps a scheduler can interleave:
    outputs = detector.run_tiles(plan.tiles[:8]) + ...   # model batches of tiles, then
    results = detector.merge(plan, outputs, 0.3, 500)

Images larger than the tile size (from the checkpoint config) are predicted in overlapping tiles
whose detections are merged by NMS, so a 1249 x 1035 aerial photo is seen at full resolution.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torchvision
from torch import nn

from . import checkpoint, detector as builders

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                                  "dcn_mobilenet_v2_fpn_trees")
BUILDERS = {"dcn_mobilenet_v2_fpn": builders.dcn_mobilenet_v2_fpn,
            "dcn_resnet50_fpn": builders.dcn_resnet50_fpn}

ImageLike = Union[np.ndarray, torch.Tensor]


def build_model(architecture: Dict[str, Any], pretrained_backbone: bool = True) -> nn.Module:
    """A detector from a checkpoint's "architecture" section ({"builder": name, **kwargs})."""
    kwargs = dict(architecture)
    name = kwargs.pop("builder", None)
    if name not in BUILDERS:
        raise checkpoint.CheckpointError(f"unknown detector builder {name!r}; "
                                         f"known: {sorted(BUILDERS)}")
    if name == "dcn_mobilenet_v2_fpn":
        kwargs["pretrained_backbone"] = pretrained_backbone
    return BUILDERS[name](**kwargs)


def as_tensor(image: ImageLike) -> torch.Tensor:
    """[H, W, 3] uint8 array or [3, H, W] float tensor in [0, 1] -> [3, H, W] float tensor."""
    if isinstance(image, torch.Tensor):
        return image.float()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {array.shape}")
    return torch.tensor(array).permute(2, 0, 1).float().div_(255)


def tile_origins(length: int, size: int, overlap: float) -> List[int]:
    """Start offsets of tiles of `size` covering [0, length) with the given overlap fraction."""
    if length <= size:
        return [0]
    stride = max(1, int(size * (1 - overlap)))
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


@dataclass
class TilePlan:
    """The work of a list of images: `tiles` ([3, h, w] views of tiles, in run order), `owners`
    (per tile: index into `placed`, view), `placed` (per tile position: image index, x0, y0,
    height, width)."""
    n_images: int
    n_views: int
    tiles: List[torch.Tensor] = field(default_factory=list)
    owners: List[Tuple[int, int]] = field(default_factory=list)
    placed: List[Tuple[int, int, int, int, int]] = field(default_factory=list)


class Detector:
    """Tiled detection and offset probing over one runtime of a detector. This class runs the
    eager PyTorch model; `model.runtimes` has the TorchScript and ONNX Runtime twins, which
    override `_run` and `probe` only.

    config: the checkpoint config (architecture, tile settings, ...); `layers`: geometry of the
    deformable layers (see model.sampling.layer_meta).
    """

    def __init__(self, model: nn.Module, config: Dict[str, Any], device: str = "cpu") -> None:
        from .sampling import layer_meta

        self.model = model.to(device).eval()
        self._setup(config, device, model.transform, layer_meta(model))
        self._probe = None  # built on first use

    def _setup(self, config: Dict[str, Any], device: str, transform: nn.Module,
               layers: List[Dict[str, Any]]) -> None:
        self.config = config
        self.device = torch.device(device)
        self.transform = transform.eval()
        self.layers = layers
        tile = config.get("tile", {})
        self.tile_size = int(tile.get("size", 400))
        self.tile_overlap = float(tile.get("overlap", 0.25))
        self.nms_iou = float(tile.get("nms_iou", 0.4))
        self.tta_iou = float(tile.get("tta_iou", 0.4))

    def _run(self, tiles: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        """Raw model outputs for a batch of [3, h, w] tiles (boxes in tile pixels)."""
        return self.model(tiles)

    @torch.no_grad()
    def preprocess(self, image: torch.Tensor):
        """[3, H, W] float in [0, 1] -> (network input [1, 3, h, w] on the device, scale from
        original to network pixels), exactly as the detector's own transform does it."""
        batch, _ = self.transform([image.to(self.device)])
        return batch.tensors, batch.image_sizes[0][0] / image.shape[1]

    @torch.no_grad()
    def probe(self, batch: torch.Tensor) -> List[np.ndarray]:
        """Offsets and masks of the deformable layers for a network input (see
        model.sampling.OffsetProbe)."""
        if self._probe is None:
            from .sampling import OffsetProbe

            self._probe = OffsetProbe(self.model)
        return [t.cpu().numpy() for t in self._probe(batch)]

    def count_tiles(self, height: int, width: int, tta: int = 1) -> int:
        """Model runs (views x tiles) that one height x width image costs; no pixel work."""
        from . import tta as augment

        rows = tile_origins(height, self.tile_size, self.tile_overlap)
        columns = tile_origins(width, self.tile_size, self.tile_overlap)
        return len(augment.views(tta)) * len(rows) * len(columns)

    def plan(self, images: Sequence[ImageLike], tta: int = 1) -> TilePlan:
        """Cuts images into (views of) overlapping tiles, in run order (see TilePlan)."""
        from . import tta as augment

        views = augment.views(tta)
        plan = TilePlan(n_images=len(images), n_views=len(views))
        for i, image in enumerate(images):
            t = as_tensor(image)
            h, w = t.shape[1:]
            for y0 in tile_origins(h, self.tile_size, self.tile_overlap):
                for x0 in tile_origins(w, self.tile_size, self.tile_overlap):
                    tile = t[:, y0:y0 + self.tile_size, x0:x0 + self.tile_size]
                    for v in views:
                        plan.tiles.append(augment.transform(tile, v))
                        plan.owners.append((len(plan.placed), v))
                    plan.placed.append((i, x0, y0) + tuple(tile.shape[1:]))
        return plan

    @torch.no_grad()
    def run_tiles(self, tiles: Sequence[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        """One model batch: raw outputs (boxes in the tile's view pixels) of [3, h, w] tiles."""
        return self._run([t.to(self.device) for t in tiles])

    @torch.no_grad()
    def merge(self, plan: TilePlan, outputs: Sequence[Dict[str, torch.Tensor]],
              score_threshold: float = 0.3,
              max_detections: int = 300) -> List[Dict[str, np.ndarray]]:
        """Per image detections (as `predict`) from the outputs of all of `plan.tiles`."""
        from . import tta as augment

        if len(outputs) != len(plan.tiles):
            raise ValueError(f"{len(outputs)} outputs for {len(plan.tiles)} tiles")
        seen = [[] for _ in plan.placed]
        for out, (k, v) in zip(outputs, plan.owners):
            boxes = augment.invert_boxes(out["boxes"], v, plan.placed[k][3], plan.placed[k][4])
            seen[k].append((boxes, out["scores"], out["labels"]))
        per_image = [[] for _ in range(plan.n_images)]
        for (i, x0, y0, _, _), parts in zip(plan.placed, seen):
            boxes, scores, labels = augment.fuse(*(torch.cat(p) for p in zip(*parts)),
                                                 n_views=plan.n_views, iou=self.tta_iou)
            shift = torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype, device=boxes.device)
            per_image[i].append((boxes + shift, scores, labels))
        return [self._merge(parts, score_threshold, max_detections) for parts in per_image]

    @torch.no_grad()
    def predict(self, images: Sequence[ImageLike], score_threshold: float = 0.3,
                max_detections: int = 300, batch_size: int = 8,
                tta: int = 1) -> List[Dict[str, np.ndarray]]:
        """Per image {"boxes" [D, 4] x1y1x2y2 in image pixels, "scores" [D], "labels" [D]}, best
        first. tta: views per tile (1, 2, 4 or 8 flips/transpositions, fused; see model.tta),
        costing that many model runs."""
        plan = self.plan(images, tta)
        outputs = []
        for s in range(0, len(plan.tiles), batch_size):
            outputs.extend(self.run_tiles(plan.tiles[s:s + batch_size]))
        return self.merge(plan, outputs, score_threshold, max_detections)

    def sampling_points(self, image: ImageLike, x: float, y: float):
        """Composed sampling locations of the deformable layers for image point (x, y); see
        model.sampling."""
        from .sampling import sampling_points

        return sampling_points(self, image, x, y)

    def _merge(self, parts, score_threshold: float, max_detections: int) -> Dict[str, np.ndarray]:
        boxes = torch.cat([p[0] for p in parts]).cpu()
        scores = torch.cat([p[1] for p in parts]).cpu()
        labels = torch.cat([p[2] for p in parts]).cpu()
        if len(parts) > 1:  # tiles overlap: the same crown may be found twice
            keep = torchvision.ops.batched_nms(boxes, scores, labels, self.nms_iou)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = scores >= score_threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        order = torch.argsort(scores, descending=True)[:max_detections]
        return {"boxes": boxes[order].numpy(), "scores": scores[order].numpy(),
                "labels": labels[order].numpy()}


def load_detector(path: Optional[str] = None, device: str = "cpu") -> Detector:
    """The detector saved at checkpoint stem `path` (default: the shipped model)."""
    stem = path or DEFAULT_CHECKPOINT
    config = checkpoint.load_config(stem)
    model = build_model(config["architecture"], pretrained_backbone=False)
    checkpoint.load_weights(model, stem)
    return Detector(model, config, device)
