"""Python face of the dcn operators (Deformable ConvNets, Dai et al. 2017; DCNv2 masks).

The kernels are compiled C++/CUDA registered as ``torch.ops.dcn.*`` (CPU and CUDA, forward and
backward, with autograd); this module adds TorchScript-friendly wrappers that infer arguments, and
the shape functions ("fake" kernels) that torch.export and torch.compile need.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from . import library  # noqa: F401  (loads torch.ops.dcn)

__all__ = ["deform_conv2d", "deform_roi_pool", "ps_deform_roi_pool"]


def _shape(t: Tensor) -> List[int]:
    return [int(d) for d in t.shape]


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: Tuple[int, int] = (1, 1),
    padding: Tuple[int, int] = (0, 0),
    dilation: Tuple[int, int] = (1, 1),
    mask: Optional[Tensor] = None,
    groups: Optional[int] = None,
    offset_groups: Optional[int] = None,
) -> Tensor:
    r"""Deformable convolution v1, or modulated v2 when ``mask`` is given.

    ``out[n, o, p0] = bias[o] + sum_{c, k} weight[o, c, k] * mask[n, g(c)k, p0]
    * input[n, c](p0 * stride - padding + p_k * dilation + offset[n, g(c)k, p0])``, with bilinear
    interpolation at fractional points and zeros outside the image.

    Args:
        input (Tensor[N, C_in, H, W]): input images.
        offset (Tensor[N, 2 * offset_groups * kh * kw, out_h, out_w]): sampling offsets, a (dy, dx)
            pair per kernel point in row-major kernel order, per offset group (the layout of
            torchvision and ONNX DeformConv).
        weight (Tensor[C_out, C_in / groups, kh, kw]): filters.
        bias (Tensor[C_out], optional): added to each output channel.
        stride, padding, dilation (int or (int, int)): as in ``conv2d``.
        mask (Tensor[N, offset_groups * kh * kw, out_h, out_w], optional): DCNv2 modulation
            scalars, one per sampling point.
        groups (int, optional): channel groups; inferred as ``C_in // weight.shape[1]``.
        offset_groups (int, optional): groups of input channels sharing one offset field;
            inferred as ``offset.shape[1] // (2 * kh * kw)``.

    Returns:
        Tensor[N, C_out, out_h, out_w] with ``out_h = (H + 2 * pad_h - dil_h * (kh - 1) - 1)
        // stride_h + 1`` (likewise ``out_w``).

    Raises:
        ValueError: when groups or offset_groups cannot be inferred from the shapes.
        RuntimeError: from the operator, naming the expected shape, for any other mismatch.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    if input.dim() != 4 or weight.dim() != 4 or offset.dim() != 4:
        raise ValueError(
            "deform_conv2d expects 4-D input [N, C, H, W], weight [C_out, C/groups, kh, kw] and "
            "offset [N, 2*offset_groups*kh*kw, out_h, out_w]; got {}, {}, {}".format(
                _shape(input), _shape(weight), _shape(offset)
            )
        )
    kh, kw = weight.shape[2], weight.shape[3]
    if groups is None:
        if weight.shape[1] == 0 or input.shape[1] % weight.shape[1] != 0:
            raise ValueError(
                "cannot infer groups: input has {} channels, weight {} needs a divisor of it "
                "in dim 1".format(input.shape[1], _shape(weight))
            )
        groups = input.shape[1] // weight.shape[1]
    if offset_groups is None:
        if offset.shape[1] == 0 or offset.shape[1] % (2 * kh * kw) != 0:
            raise ValueError(
                "cannot infer offset_groups: offset has {} channels, expected a positive "
                "multiple of 2*kh*kw = {}".format(offset.shape[1], 2 * kh * kw)
            )
        offset_groups = offset.shape[1] // (2 * kh * kw)
    return torch.ops.dcn.deform_conv2d(
        input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, offset_groups
    )


def deform_roi_pool(
    input: Tensor,
    rois: Tensor,
    offset: Optional[Tensor],
    output_size: Tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    gamma: float = 0.1,
    aligned: bool = True,
) -> Tensor:
    r"""Deformable RoI pooling (Dai et al. 2017, sec. 2.2).

    Each RoI is split into ``output_size`` bins; bin (i, j) is shifted by
    ``gamma * (offset[k, 0, i, j] * roi_w, offset[k, 1, i, j] * roi_h)`` and averages a grid of
    bilinear samples (RoIAlign with half-pixel aligned boxes). Zero (or no) offsets give
    ``torchvision.ops.roi_align(..., aligned=True)``.

    Args:
        input (Tensor[N, C, H, W]): feature map.
        rois (Tensor[K, 5]): boxes ``(batch_index, x1, y1, x2, y2)`` in input-image pixels.
        offset (Tensor[K, 2, out_h, out_w], optional): normalised bin offsets, x first then y
            (from the fc layer of ``layers.DeformRoIPool``); None pools without offsets.
        output_size (int or (int, int)): pooled size (out_h, out_w).
        spatial_scale (float): feature-map pixels per image pixel (1 / stride).
        sampling_ratio (int): samples per bin side; <= 0 uses ``ceil(bin size)`` per RoI.
        gamma (float): offset scale (0.1 in the paper).
        aligned (bool): half-pixel aligned boxes (default); False reproduces torchvision's
            legacy ``roi_align(aligned=False)`` (boxes of at least one pixel), as used by
            torchvision's detection models.

    Returns:
        Tensor[K, C, out_h, out_w].
    """
    oh, ow = _pair(output_size)
    return torch.ops.dcn.deform_roi_pool(
        input, rois, offset, oh, ow, spatial_scale, sampling_ratio, gamma, aligned
    )


def ps_deform_roi_pool(
    input: Tensor,
    rois: Tensor,
    offset: Optional[Tensor],
    output_size: Tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    gamma: float = 0.1,
    aligned: bool = True,
) -> Tensor:
    r"""Position-sensitive deformable RoI pooling (R-FCN score maps, Dai et al. 2017).

    Like :func:`deform_roi_pool`, but bin (i, j) of output channel c reads input channel
    ``(c * out_h + i) * out_w + j``. Zero offsets give ``torchvision.ops.ps_roi_align``.

    Args:
        input (Tensor[N, output_dim * out_h * out_w, H, W]): position-sensitive score maps.
        rois (Tensor[K, 5]): boxes ``(batch_index, x1, y1, x2, y2)`` in input-image pixels.
        offset (Tensor[K, 2, out_h, out_w], optional): normalised bin offsets, x first.
        output_size, spatial_scale, sampling_ratio, gamma, aligned: as in
            :func:`deform_roi_pool`.

    Returns:
        Tensor[K, output_dim, out_h, out_w].
    """
    oh, ow = _pair(output_size)
    return torch.ops.dcn.ps_deform_roi_pool(
        input, rois, offset, oh, ow, spatial_scale, sampling_ratio, gamma, aligned
    )


# ---- shape functions for torch.export / torch.compile ------------------------------------------

@torch.library.register_fake("dcn::deform_conv2d")
def _deform_conv2d_fake(input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups,
                        offset_groups):
    out_h = (input.shape[2] + 2 * ph - (dh * (weight.shape[2] - 1) + 1)) // sh + 1
    out_w = (input.shape[3] + 2 * pw - (dw * (weight.shape[3] - 1) + 1)) // sw + 1
    return input.new_empty((input.shape[0], weight.shape[0], out_h, out_w))


@torch.library.register_fake("dcn::_deform_conv2d_backward")
def _deform_conv2d_backward_fake(grad, input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw,
                                 groups, offset_groups):
    return (
        torch.empty_like(input),
        torch.empty_like(weight),
        torch.empty_like(offset),
        torch.empty_like(mask) if mask is not None else input.new_empty((0,)),
        torch.empty_like(bias) if bias is not None else input.new_empty((0,)),
    )


def _roi_pool_fake(position_sensitive: bool):
    def fake(input, rois, offset, pooled_h, pooled_w, spatial_scale, sampling_ratio, gamma,
             aligned=True):
        channels = input.shape[1] // (pooled_h * pooled_w) if position_sensitive else input.shape[1]
        return input.new_empty((rois.shape[0], channels, pooled_h, pooled_w))

    return fake


torch.library.register_fake("dcn::deform_roi_pool")(_roi_pool_fake(False))
torch.library.register_fake("dcn::ps_deform_roi_pool")(_roi_pool_fake(True))


@torch.library.register_fake("dcn::_deform_roi_pool_backward")
def _deform_roi_pool_backward_fake(grad, input, rois, offset, pooled_h, pooled_w, spatial_scale,
                                   sampling_ratio, gamma, aligned, position_sensitive):
    return (
        torch.empty_like(input),
        torch.empty_like(offset) if offset is not None else input.new_empty((0,)),
    )
