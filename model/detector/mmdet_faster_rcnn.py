"""mmdetection's Faster R-CNN R50-FPN configurations, composed from our parts: torchvision's
ResNet-50 (frozen batch norm) and FPN (same layout and maths as mmdetection's), our deformable
convolutions (mmcv DeformConv2dPack / ModulatedDeformConv2dPack: interleaved (dy, dx) offsets,
mask = sigmoid of the last third) in the 3x3 convs of res3-res5, mmdetection's preprocessing
(mmdet_transform) and heads (mmdet_heads). A whole-image model: one network input per image.

One builder per mmdetection config (MMDET_CONFIGS maps the config names to them):

    faster_rcnn_r50_fpn_1x_coco                  plain
    faster_rcnn_r50_dconv_c3_c5_fpn_1x_coco      DCNv1 in res3-res5 (13 convs)
    faster_rcnn_r50_mdconv_c3_c5_fpn_1x_coco     DCNv2 (modulated) in res3-res5
    faster_rcnn_r50_mdconv_group4_c3_c5_fpn_1x_coco   DCNv2 with 4 offset groups
    faster_rcnn_r50_fpn_dpool_1x_coco            DeformRoIPoolPack box pooling
"""
from typing import Dict, List, Optional, Tuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

from model.ops.layers import DeformConv2d, ModulatedDeformConv2d

from .mmdet_heads import RoIHead, RPNHead
from .mmdet_transform import MMDetTransform

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")


def _deformable_conv(conv: nn.Conv2d, modulated: bool, offset_groups: int) -> DeformConv2d:
    """mmcv's DCN / DCNv2 in place of a bottleneck's 3x3 conv (same geometry, no bias)."""
    args = (conv.in_channels, conv.out_channels, conv.kernel_size)
    kwargs = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                  offset_groups=offset_groups, bias=False)
    if modulated:
        return ModulatedDeformConv2d(*args, modulation_scale=1.0, **kwargs)
    return DeformConv2d(*args, **kwargs)


class MMDetFasterRCNN(nn.Module):
    """The detector at test time, with torchvision's detection API:

    forward(images: list of Tensor[3, h, w] float in [0, 1]) -> per image {"boxes" [D, 4]
    x1y1x2y2 image pixels, "scores" [D], "labels" [D] 1-based (mmdetection label + 1)}.
    """

    def __init__(self, backbone: nn.Module, classes: int, deformable_roi_pool: bool) -> None:
        super().__init__()
        self.transform = MMDetTransform()
        self.backbone = backbone  # .body (ResNet), .fpn
        self.rpn_head = RPNHead()
        self.roi_head = RoIHead(classes, deformable_roi_pool)

    def forward(self, images: List[Tensor]) -> List[Dict[str, Tensor]]:
        batch, box_scales = self.transform(images)
        levels = list(self.backbone(batch.tensors).values())  # strides 4, 8, 16, 32, 64
        out: List[Dict[str, Tensor]] = []
        for i, size in enumerate(batch.image_sizes):
            image_size = torch.tensor([size[0], size[1]], dtype=torch.float32)
            boxes, scores, labels = self.heads([x[i: i + 1] for x in levels], image_size,
                                               box_scales[i])
            out.append({"boxes": boxes, "scores": scores, "labels": labels})
        return out

    def heads(self, features: List[Tensor], image_size: Tensor,
              box_scale: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """RPN and RoI head of one image: FPN levels [1, C, H_l, W_l], image_size [2] (h, w)
        resized, box_scale [2] (see MMDetTransform) -> boxes [D, 4], scores [D], labels [D]
        1-based."""
        proposals, _ = self.rpn_head(features, image_size)
        boxes, scores, labels = self.roi_head(features[:4], proposals, image_size, box_scale)
        return boxes, scores, labels + 1


class NetworkInputGraph(nn.Module):
    """The detector from its network input on, for graphs whose preprocessing runs outside them
    (model.inference.mmdet_preprocess; ONNX Runtime): forward(x [1, 3, H, W] normalised and
    padded, image_size [2] float (h, w) resized, box_scale [2] float (x, y)) -> (boxes [D, 4]
    image pixels, labels [D] 1-based, scores [D])."""

    def __init__(self, model: MMDetFasterRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, image_size: Tensor, box_scale: Tensor):
        levels = list(self.model.backbone(x).values())
        boxes, scores, labels = self.model.heads(levels, image_size, box_scale)
        return boxes, labels, scores


def faster_rcnn_r50_fpn(num_classes: int = 80, dcn: Optional[str] = None, offset_groups: int = 1,
                        dpool: bool = False) -> MMDetFasterRCNN:
    """The R50-FPN Faster R-CNN of mmdetection's configs: dcn None, "dconv" (DCNv1) or "mdconv"
    (DCNv2) in every 3x3 conv of res3-res5 (mmdetection's stage_with_dcn (False, True, True,
    True)); dpool: DeformRoIPoolPack instead of RoIAlign."""
    net = torchvision.models.resnet50(weights=None, norm_layer=torchvision.ops.FrozenBatchNorm2d)
    if dcn is not None:
        if dcn not in ("dconv", "mdconv"):
            raise ValueError(f"dcn must be None, 'dconv' or 'mdconv', not {dcn!r}")
        for stage in (net.layer2, net.layer3, net.layer4):
            for block in stage:
                block.conv2 = _deformable_conv(block.conv2, dcn == "mdconv", offset_groups)
    backbone = _resnet_fpn_extractor(net, 5)
    return MMDetFasterRCNN(backbone, num_classes, dpool)


def faster_rcnn_r50_fpn_1x_coco(num_classes: int = 80) -> MMDetFasterRCNN:
    return faster_rcnn_r50_fpn(num_classes)


def faster_rcnn_r50_dconv_c3_c5_fpn_1x_coco(num_classes: int = 80) -> MMDetFasterRCNN:
    return faster_rcnn_r50_fpn(num_classes, dcn="dconv")


def faster_rcnn_r50_mdconv_c3_c5_fpn_1x_coco(num_classes: int = 80) -> MMDetFasterRCNN:
    return faster_rcnn_r50_fpn(num_classes, dcn="mdconv")


def faster_rcnn_r50_mdconv_group4_c3_c5_fpn_1x_coco(num_classes: int = 80) -> MMDetFasterRCNN:
    return faster_rcnn_r50_fpn(num_classes, dcn="mdconv", offset_groups=4)


def faster_rcnn_r50_fpn_dpool_1x_coco(num_classes: int = 80) -> MMDetFasterRCNN:
    return faster_rcnn_r50_fpn(num_classes, dpool=True)


MMDET_CONFIGS = {
    "faster-rcnn_r50_fpn_1x_coco": faster_rcnn_r50_fpn_1x_coco,
    "faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco": faster_rcnn_r50_dconv_c3_c5_fpn_1x_coco,
    "faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco": faster_rcnn_r50_mdconv_c3_c5_fpn_1x_coco,
    "faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco":
        faster_rcnn_r50_mdconv_group4_c3_c5_fpn_1x_coco,
    "faster-rcnn_r50_fpn_dpool_1x_coco": faster_rcnn_r50_fpn_dpool_1x_coco,
}

