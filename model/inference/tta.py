"""Test-time augmentation: a tile seen under the right-angle symmetries of an aerial view
(flips, transposition), detections mapped back and fused (NumPy only, shared by every runtime).

Views are numbered 0..7 by bits: 1 = mirror left-right, 2 = flip up-down, 4 = transpose (applied
in that order); `views(n)` picks the first n (1, 2, 4 or 8). Detections of the views are fused by
weighted box fusion: clusters form around the boxes that survive NMS at `iou`, a cluster's box
is the score-weighted mean of its members and its score the noisy-or of theirs taken per view,
1 - prod(1 - s_i) ** (1 / n_views): a crown found once in every view with score s keeps s, one
found in fewer views is discounted, and overlapping duplicates add evidence. Each view costs a
model run. On SOAP_061 4 views lower the shipped model's AP@0.5 (0.539 -> 0.512; they raised
an earlier, less trained model's), so the service default is one view (see README).
"""
from typing import List, Tuple

import numpy as np

from .boxes import batched_nms, box_iou

VIEW_COUNTS = (1, 2, 4, 8)


def views(n: int) -> List[int]:
    if n not in VIEW_COUNTS:
        raise ValueError(f"test-time augmentation takes 1, 2, 4 or 8 views, got {n}")
    return list(range(n))


def transform(tile: np.ndarray, view: int) -> np.ndarray:
    """[3, h, w] tile as seen in `view` ([3, w, h] for transposing views), contiguous."""
    if view & 1:
        tile = tile[:, :, ::-1]
    if view & 2:
        tile = tile[:, ::-1, :]
    if view & 4:
        tile = tile.transpose(0, 2, 1)
    return np.ascontiguousarray(tile)


def invert_boxes(boxes: np.ndarray, view: int, height: int, width: int) -> np.ndarray:
    """[D, 4] x1y1x2y2 boxes detected in `view` of a height x width tile -> tile coordinates."""
    if view & 4:
        boxes = boxes[:, [1, 0, 3, 2]]
    x1, y1, x2, y2 = boxes.T
    if view & 2:
        y1, y2 = height - y2, height - y1
    if view & 1:
        x1, x2 = width - x2, width - x1
    return np.stack([x1, y1, x2, y2], 1).astype(boxes.dtype, copy=False)


def fuse(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, n_views: int,
         iou: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted box fusion of the detections of n_views views of one tile.

    boxes [D, 4], scores [D], labels [D] -> fused boxes [F, 4], scores [F], labels [F]."""
    if n_views == 1 or len(boxes) == 0:
        return boxes, scores, labels
    keep = batched_nms(boxes, scores, labels, iou)  # cluster centres, by score
    member = (box_iou(boxes[keep], boxes) > iou) & (labels[keep][:, None] == labels[None, :])
    member[np.arange(len(keep)), keep] = True
    # each box joins the best-scoring centre it overlaps (NMS guarantees there is one)
    cluster = member.argmax(0)
    columns = np.arange(len(boxes))
    weight = np.zeros((len(keep), len(boxes)), scores.dtype)
    weight[cluster, columns] = scores
    fused = weight @ boxes / np.maximum(weight.sum(1), 1e-12)[:, None]
    # noisy-or of the members, per view: 1 - prod(1 - s) ** (1 / n_views)
    miss = np.zeros_like(weight)
    miss[cluster, columns] = np.log1p(-np.minimum(scores, 1 - 1e-6))
    return fused.astype(boxes.dtype), -np.expm1(miss.sum(1) / n_views), labels[keep]
