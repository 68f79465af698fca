"""Box arithmetic in NumPy (no torch): IoU and greedy non-maximum suppression.

Boxes are [N, 4] x1y1x2y2 float32. The results equal torchvision's `box_iou`, `nms` and
`batched_nms` on the CPU (same float32 arithmetic, same "suppress when IoU > threshold" rule),
so tiling and test-time augmentation give the same detections on every runtime.
"""
import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] -> [N]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4], [M, 4] -> [N, M] intersection over union."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first: a box is dropped when its IoU
    with a better kept box exceeds `iou`."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    areas = area(boxes)
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = boxes[i + 1:]
        lt = np.maximum(boxes[i, :2], rest[:, :2])
        rb = np.minimum(boxes[i, 2:], rest[:, 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        suppressed[i + 1:] |= inter / (areas[i] + areas[i + 1:] - inter) > iou
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                iou: float) -> np.ndarray:
    """NMS within each label (boxes of different labels never suppress each other)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    # Shift each label's boxes apart so that they cannot overlap, then one NMS pass.
    shift = labels.astype(boxes.dtype) * (boxes.max() + 1)
    return nms(boxes + shift[:, None], scores, iou)
