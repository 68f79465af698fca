"""Deformable layers (Dai et al. 2017; DCNv2, Zhu et al. 2019) built on the dcn operators.

Each layer owns the small network that predicts its offsets (and masks), zero-initialised as in
the papers, so a fresh layer behaves exactly like its rigid counterpart (a plain convolution or
RoIAlign average pooling) and learns to deform during training.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from . import functional as ops


class DeformConv2d(nn.Module):
    """Deformable convolution v1: ``y(p0) = sum_k w_k * x(p0 + p_k + dp_k)``.

    The offsets dp are predicted from the same input by ``offset_conv`` (a conv with this layer's
    kernel, stride, padding and dilation; ``2 * offset_groups * kh * kw`` output channels).

    Shapes: input [N, in_channels, H, W] -> output [N, out_channels, out_h, out_w], as ``Conv2d``.
    """

    mask_channels_per_point = 0  # ModulatedDeformConv2d predicts one mask channel per point

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Tuple[int, int],
        stride: int | Tuple[int, int] = 1,
        padding: int | Tuple[int, int] = 0,
        dilation: int | Tuple[int, int] = 1,
        groups: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        if in_channels % offset_groups:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by offset_groups "
                             f"({offset_groups})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size: Tuple[int, int] = _pair(kernel_size)
        self.stride: Tuple[int, int] = _pair(stride)
        self.padding: Tuple[int, int] = _pair(padding)
        self.dilation: Tuple[int, int] = _pair(dilation)
        self.groups = groups
        self.offset_groups = offset_groups
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        points = offset_groups * kh * kw
        self.offset_conv = nn.Conv2d(
            in_channels, (2 + self.mask_channels_per_point) * points, self.kernel_size,
            stride=self.stride, padding=self.padding, dilation=self.dilation, bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform filters (as ``Conv2d``); zero offset predictor (rigid start)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def offsets(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Predicted offsets [N, 2*offset_groups*kh*kw, out_h, out_w] and mask (None in v1)."""
        return self.offset_conv(x), None

    def forward(self, x: Tensor) -> Tensor:
        offset, mask = self.offsets(x)
        return ops.deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask, groups=self.groups,
            offset_groups=self.offset_groups,
        )

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.offset_groups != 1:
            s += f", offset_groups={self.offset_groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ModulatedDeformConv2d(DeformConv2d):
    """Modulated deformable convolution (DCNv2): ``y(p0) = sum_k w_k * m_k * x(p0 + p_k + dp_k)``.

    ``offset_conv`` predicts offsets and mask logits (``3 * offset_groups * kh * kw`` channels);
    masks are ``modulation_scale * sigmoid(logits)``: 0.5 everywhere at initialisation as in the
    paper with the default scale 1; with ``modulation_scale=2`` a fresh layer is exactly the
    rigid convolution (masks 1), which keeps pretrained rigid weights' function when converting.
    """

    mask_channels_per_point = 1

    def __init__(self, *args, modulation_scale: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.modulation_scale = float(modulation_scale)

    def offsets(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Offsets [N, 2*G*kh*kw, out_h, out_w] and masks [N, G*kh*kw, out_h, out_w]."""
        out = self.offset_conv(x)
        points = self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        return out[:, : 2 * points], self.modulation_scale * torch.sigmoid(out[:, 2 * points:])


class DeformRoIPool(nn.Module):
    """Deformable RoI pooling with its offset fc layer (Dai et al. 2017, sec. 2.2).

    RoIs are first pooled rigidly; ``offset_fc`` maps those features to normalised bin offsets,
    scaled by ``gamma`` and the RoI size; the RoIs are then pooled again with the offsets.
    ``offset_fc`` is one linear layer, or with ``offset_hidden`` > 0 the paper's three (two
    hidden ReLU layers of that width, mmcv's DeformRoIPoolPack); its last layer starts at zero.

    Shapes: input [N, C, H, W], rois [K, 5] (batch_index, x1, y1, x2, y2 in image pixels)
    -> [K, C, out_h, out_w] (``position_sensitive``: input channels C = output_dim * out_h * out_w
    and output [K, output_dim, out_h, out_w]).
    """

    position_sensitive = False

    def __init__(
        self,
        channels: int,
        output_size: int | Tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int = 2,
        gamma: float = 0.1,
        aligned: bool = True,
        offset_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.aligned = bool(aligned)
        self.output_size: Tuple[int, int] = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.gamma = float(gamma)
        bins = self.output_size[0] * self.output_size[1]
        if offset_hidden > 0:
            self.offset_fc = nn.Sequential(
                nn.Linear(channels * bins, offset_hidden), nn.ReLU(),
                nn.Linear(offset_hidden, offset_hidden), nn.ReLU(),
                nn.Linear(offset_hidden, 2 * bins))
        else:
            self.offset_fc = nn.Linear(channels * bins, 2 * bins)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        last = self.offset_fc[-1] if isinstance(self.offset_fc, nn.Sequential) else self.offset_fc
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def pool(self, x: Tensor, rois: Tensor, offset: Optional[Tensor],
             spatial_scale: float) -> Tensor:
        return ops.deform_roi_pool(x, rois, offset, self.output_size, spatial_scale,
                                   self.sampling_ratio, self.gamma, self.aligned)

    def forward(self, x: Tensor, rois: Tensor, spatial_scale: Optional[float] = None) -> Tensor:
        """spatial_scale: input cells per image pixel for this call (default: the layer's own;
        a multi-level pooler passes each level's)."""
        scale = self.spatial_scale
        if spatial_scale is not None:
            scale = spatial_scale
        rigid = self.pool(x, rois, None, scale)
        offset = self.offset_fc(rigid.flatten(1)).view(-1, 2, self.output_size[0],
                                                       self.output_size[1])
        return self.pool(x, rois, offset, scale)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, output_size={self.output_size}, "
                f"spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}, "
                f"gamma={self.gamma}")


class PSDeformRoIPool(DeformRoIPool):
    """Position-sensitive deformable RoI pooling (R-FCN), with its offset fc layer.

    ``channels`` is the output_dim: the input has ``output_dim * out_h * out_w`` channels.
    """

    position_sensitive = True

    def pool(self, x: Tensor, rois: Tensor, offset: Optional[Tensor],
             spatial_scale: float) -> Tensor:
        return ops.ps_deform_roi_pool(x, rois, offset, self.output_size, spatial_scale,
                                      self.sampling_ratio, self.gamma, self.aligned)
