"""mmdetection's Faster R-CNN heads at test time (mmdet 3.x semantics), in plain modules whose
parameter names are mmdetection's (``rpn_head.rpn_conv``, ``roi_head.bbox_head.shared_fcs.0``,
``roi_head.bbox_roi_extractor.roi_layers.<level>.offset_fc.<i>``), so its checkpoints load by
name.

- Anchors: AnchorGenerator(strides 4..64, scale 8, ratios 0.5/1/2), centre offset 0, not
  rounded; (h, w, anchor) order.
- RPN: per level the top `nms_pre` sigmoid scores, DeltaXYWHBBoxCoder decode (both-sided
  clamp of dw/dh at |log(16/1000)|, clipped to the resized image), boxes of zero width or
  height dropped, NMS per level (mmcv batched_nms: coordinate offsets), `max_per_img` kept.
- RoI head: level = floor(log2(sqrt(area) / 56 + 1e-6)) clamped to 0..3; aligned RoIAlign with
  adaptive sampling (or DeformRoIPoolPack: the same pooling plus offsets from a 3-layer fc,
  gamma 0.1); Shared2FCBBoxHead; softmax with background last; class-specific deltas with
  stds (0.1, 0.1, 0.2, 0.2); rescale to the original image before NMS; score > 0.05, NMS 0.5
  per class, 100 per image.
"""
import math
from typing import List, Tuple

import torch
import torchvision
from torch import Tensor, nn

from model.ops.functional import deform_roi_pool
from model.ops.layers import DeformRoIPool

WH_RATIO_CLIP = abs(math.log(16 / 1000))


def level_anchors(stride: int, height: int, width: int, scale: float = 8.0,
                  ratios: Tuple[float, float, float] = (0.5, 1.0, 2.0),
                  device: torch.device = torch.device("cpu")) -> Tensor:
    """mmdetection's anchors of one level: Tensor[height * width * len(ratios), 4] x1y1x2y2."""
    r = torch.tensor([ratios[0], ratios[1], ratios[2]], dtype=torch.float32, device=device)
    h_ratios = torch.sqrt(r)
    w_ratios = 1 / h_ratios
    ws = float(stride) * w_ratios * scale
    hs = float(stride) * h_ratios * scale
    base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], -1)  # [A, 4]
    xs = torch.arange(width, device=device).to(torch.float32) * stride
    ys = torch.arange(height, device=device).to(torch.float32) * stride
    xx = xs.repeat(height)
    yy = ys.view(-1, 1).repeat(1, width).view(-1)
    shifts = torch.stack([xx, yy, xx, yy], -1)
    return (base[None] + shifts[:, None]).view(-1, 4)


def decode_deltas(boxes: Tensor, deltas: Tensor, stds: Tuple[float, float, float, float],
                  image_size: Tensor, clip: float = WH_RATIO_CLIP) -> Tensor:
    """DeltaXYWHBBoxCoder.decode: boxes [K, 4], deltas [K, 4 * C] -> [K, 4 * C], clipped to
    image_size [2] (h, w)."""
    k, classes = deltas.shape[0], deltas.shape[1] // 4
    d = deltas.reshape(-1, 4) * torch.tensor([stds[0], stds[1], stds[2], stds[3]],
                                             dtype=deltas.dtype, device=deltas.device)
    rois = boxes.repeat(1, classes).reshape(-1, 4)
    pxy = (rois[:, :2] + rois[:, 2:]) * 0.5
    pwh = rois[:, 2:] - rois[:, :2]
    gxy = pxy + pwh * d[:, :2]
    gwh = pwh * d[:, 2:].clamp(min=-clip, max=clip).exp()
    out = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], -1)
    limit = image_size.to(out).flip(0).repeat(2)  # (w, h, w, h)
    out = torch.minimum(out.clamp(min=0), limit)
    return out.reshape(k, -1)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou: float,
                split: int = 10000) -> Tensor:
    """mmcv.ops.batched_nms: NMS within each group on boxes shifted apart by
    group * (max coordinate + 1); indices kept, best score first. From `split` boxes on, one
    NMS per group (still on the shifted boxes), as mmcv does; the same boxes are kept either
    way, so a traced graph (whose branches are frozen) always takes the first. Boxes are
    non-negative (clipped to the image), so an empty set shifts by 1."""
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()  # max() of none fails in ONNX
    offsets = groups.to(boxes) * (top + 1)
    shifted = boxes + offsets[:, None]
    if torch.jit.is_tracing() or boxes.shape[0] < split:
        return torchvision.ops.nms(shifted, scores, iou)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for g in torch.unique(groups):
        members = torch.where(groups == g)[0]
        keep[members[torchvision.ops.nms(shifted[members], scores[members], iou)]] = True
    kept = torch.where(keep)[0]
    order = torch.sort(scores[kept], descending=True)[1]
    return kept[order]


class RPNHead(nn.Module):
    """forward(features: list of Tensor[1, C, H_l, W_l] (strides `strides`), image_size [2]
    (h, w) resized) -> (proposals Tensor[P, 4] x1y1x2y2 network-input pixels, their scores
    Tensor[P]), P <= max_per_img, best first."""

    def __init__(self, channels: int = 256, anchors: int = 3,
                 strides: Tuple[int, ...] = (4, 8, 16, 32, 64), nms_pre: int = 1000,
                 max_per_img: int = 1000, iou: float = 0.7) -> None:
        super().__init__()
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, anchors * 4, 1)
        self.strides, self.nms_pre, self.max_per_img, self.iou = (
            list(strides), nms_pre, max_per_img, iou)

    def forward(self, features: List[Tensor], image_size: Tensor) -> Tuple[Tensor, Tensor]:
        scores, deltas, anchors, levels = [], [], [], []
        for level, (x, stride) in enumerate(zip(features, self.strides)):
            x = torch.relu(self.rpn_conv(x))
            s = self.rpn_cls(x)[0].permute(1, 2, 0).reshape(-1).sigmoid()
            d = self.rpn_reg(x)[0].permute(1, 2, 0).reshape(-1, 4)
            a = level_anchors(stride, x.shape[-2], x.shape[-1], device=x.device)
            # mmdetection sorts only levels with more than nms_pre anchors; sorting all of them
            # keeps the same boxes (NMS orders by score) and no shape-dependent branch
            s, order = s.sort(descending=True)
            s, order = s[: self.nms_pre], order[: self.nms_pre]
            d, a = d[order], a[order]
            scores.append(s)
            deltas.append(d)
            anchors.append(a)
            levels.append(torch.full_like(s, level, dtype=torch.int64))
        scores_, levels_ = torch.cat(scores), torch.cat(levels)
        boxes = decode_deltas(torch.cat(anchors), torch.cat(deltas), (1.0, 1.0, 1.0, 1.0),
                              image_size)
        valid = torch.where((boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0))[0]
        boxes, scores_, levels_ = boxes[valid], scores_[valid], levels_[valid]
        keep = batched_nms(boxes, scores_, levels_, self.iou)[: self.max_per_img]
        return boxes[keep], scores_[keep]


class RoIAlignLayer(nn.Module):
    """mmcv RoIAlign(output_size, spatial_scale, sampling_ratio=0, aligned=True) on our RoI
    pooling op (zero offsets). forward(x [N, C, H, W], rois [K, 5]) -> [K, C, 7, 7]."""

    def __init__(self, output_size: int, spatial_scale: float) -> None:
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        return deform_roi_pool(x, rois, None, (self.output_size, self.output_size),
                               self.spatial_scale, 0, 0.1, True)


class RoIExtractor(nn.Module):
    """SingleRoIExtractor: forward(features [N, C, H_l, W_l] for the `strides`, rois [K, 5]) ->
    [K, C, 7, 7], each RoI pooled from its level by that level's layer."""

    def __init__(self, channels: int = 256, strides: Tuple[int, ...] = (4, 8, 16, 32),
                 deformable: bool = False, finest_scale: float = 56.0) -> None:
        super().__init__()
        self.channels, self.finest_scale = channels, finest_scale
        self.roi_layers = nn.ModuleList(
            # mmcv DeformRoIPoolPack: offset fc C*49 -> 1024 -> 1024 -> 98, gamma 0.1, adaptive
            DeformRoIPool(channels, 7, 1.0 / s, 0, 0.1, aligned=True, offset_hidden=1024)
            if deformable else RoIAlignLayer(7, 1.0 / s) for s in strides)

    def forward(self, features: List[Tensor], rois: Tensor) -> Tensor:
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        levels = levels.clamp(min=0, max=len(self.roi_layers) - 1).long()
        # pooled level by level, then put back in RoI order by a gather (a traced scatter would
        # keep the example's per-level counts)
        pooled: List[Tensor] = []
        members: List[Tensor] = []
        for level, layer in enumerate(self.roi_layers):
            idx = torch.where(levels == level)[0]
            if torch.jit.is_tracing() or idx.numel() > 0:  # a traced graph keeps every level
                pooled.append(layer(features[level], rois[idx]))
                members.append(idx)
        if len(pooled) == 0:
            return features[0].new_zeros((0, self.channels, 7, 7))
        return torch.cat(pooled)[torch.argsort(torch.cat(members))]


class BBoxHead(nn.Module):
    """Shared2FCBBoxHead: forward([K, C, 7, 7]) -> (class logits [K, classes + 1], background
    last; deltas [K, 4 * classes])."""

    def __init__(self, classes: int = 80, channels: int = 256, hidden: int = 1024) -> None:
        super().__init__()
        self.shared_fcs = nn.ModuleList([nn.Linear(channels * 49, hidden),
                                         nn.Linear(hidden, hidden)])
        self.fc_cls = nn.Linear(hidden, classes + 1)
        self.fc_reg = nn.Linear(hidden, 4 * classes)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = torch.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class RoIHead(nn.Module):
    """StandardRoIHead at test time: forward(features, proposals [P, 4], image_size [2] (h, w)
    resized, box_scale [2] (x, y) image pixels per network-input pixel) -> (boxes [D, 4]
    original-image pixels, scores [D], labels [D] 0-based), D <= max_per_img, best first."""

    def __init__(self, classes: int = 80, deformable: bool = False, score_thr: float = 0.05,
                 iou: float = 0.5, max_per_img: int = 100) -> None:
        super().__init__()
        self.bbox_roi_extractor = RoIExtractor(deformable=deformable)
        self.bbox_head = BBoxHead(classes)
        self.score_thr, self.iou, self.max_per_img = score_thr, iou, max_per_img

    def forward(self, features: List[Tensor], proposals: Tensor, image_size: Tensor,
                box_scale: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        rois = torch.cat([proposals.new_zeros((proposals.shape[0], 1)), proposals], 1)
        logits, deltas = self.bbox_head(self.bbox_roi_extractor(features, rois))
        scores = torch.softmax(logits, -1)
        boxes = decode_deltas(proposals, deltas, (0.1, 0.1, 0.2, 0.2), image_size)
        boxes = (boxes.view(boxes.shape[0], -1, 4) * box_scale.to(boxes).repeat(2)).reshape(-1, 4)
        classes = scores.shape[1] - 1
        scores = scores[:, :classes].reshape(-1)
        labels = torch.arange(classes, device=scores.device).repeat(proposals.shape[0])
        valid = torch.where(scores > self.score_thr)[0]
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = batched_nms(boxes, scores, labels, self.iou)[: self.max_per_img]
        return boxes[keep], scores[keep], labels[keep]
