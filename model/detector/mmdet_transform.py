"""mmdetection's test-time preprocessing, reproduced bit for bit without OpenCV.

mmdetection resizes the uint8 image with ``mmcv.imrescale`` (keep ratio, OpenCV's bilinear
``cv2.resize``), normalises in float32 and pads bottom/right to a multiple of 32 with zeros
(after normalisation). OpenCV's uint8 bilinear resize is fixed-point: 11-bit coefficients, a
horizontal pass in int32, and a vertical pass as its SIMD code rounds it
(``VResizeLinearVec_32s8u``: inputs shifted right by 4, high halves of 16-bit products, a
rounding shift by 2; OpenCV 5 runs it over whole rows). It is reproduced here in float64, where
every intermediate is an exact integer (bit-exact against cv2.resize, tests/detector).
model.inference.mmdet_preprocess is the same pipeline in NumPy, for graphs that start at the
network input (ONNX Runtime); this one is part of the eager and TorchScript graphs.
"""
from typing import List, Tuple

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from model.inference.mmdet_preprocess import rescale_size


def _taps(src: int, dst: int, device: torch.device,
          clamp_weights: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """OpenCV's bilinear taps along one axis: source indices [dst] (two) and their fixed-point
    weights [dst] (two, float64 integers that sum to about 2048). Past the borders OpenCV
    moves the horizontal taps onto the edge pixel (weights 2048, 0) but keeps the vertical
    weights and clips the rows (`clamp_weights` False)."""
    scale = 1.0 / (float(dst) / float(src))  # as cv::resize: 1 / inv_scale
    d = torch.arange(dst, dtype=torch.float64, device=device)
    f = ((d + 0.5) * scale - 0.5).to(torch.float32)
    s = torch.floor(f)
    f = f - s
    low = s < 0
    high = s >= src - 1
    if clamp_weights:
        f = torch.where(low | high, torch.zeros_like(f), f)
        s = torch.clamp(s, 0, src - 1)
    w0 = torch.round((1.0 - f) * 2048.0).to(torch.float64)  # round half even, as cvRound
    w1 = torch.round(f * 2048.0).to(torch.float64)  # 2048: INTER_RESIZE_COEF_SCALE
    i0 = torch.clamp(s, 0, src - 1).to(torch.int64)
    i1 = torch.clamp(s + 1, 0, src - 1).to(torch.int64)
    return i0, i1, w0, w1


def resize_bilinear_uint8(image: Tensor, height: int, width: int) -> Tensor:
    """cv2.resize(..., INTER_LINEAR) of a uint8-valued image.

    image: Tensor[C, H, W] holding integers 0..255 (any dtype) -> Tensor[C, height, width]
    float64 holding integers 0..255.
    """
    h, w = image.shape[-2], image.shape[-1]
    src = image.to(torch.float64)
    x0, x1, a0, a1 = _taps(w, width, image.device, True)
    y0, y1, b0, b1 = _taps(h, height, image.device, False)
    rows = src[:, :, x0] * a0 + src[:, :, x1] * a1  # [C, H, width], exact integers
    r0, r1 = rows[:, y0], rows[:, y1]  # [C, height, width]
    b0, b1 = b0[:, None], b1[:, None]
    out = (torch.floor(torch.floor(r0 / 16) * b0 / 65536)
           + torch.floor(torch.floor(r1 / 16) * b1 / 65536))
    return torch.clamp(torch.floor((out + 2) / 4), 0, 255)


class MMDetTransform(nn.Module):
    """mmdetection's test pipeline (Resize keep_ratio + DetDataPreprocessor) on a batch.

    forward(images: list of Tensor[3, h, w] float in [0, 1] (uint8 / 255, RGB)) ->
    (ImageList(tensors Tensor[N, 3, H, W] float32 normalised, zero-padded to multiples of
    `size_divisor`; image_sizes [(h', w')] resized), box scales Tensor[N, 2] float32: image
    pixels per network-input pixel (x, y), 1 / mmdetection's scale_factor).
    """

    def __init__(self, long_edge: int = 1333, short_edge: int = 800,
                 mean: Tuple[float, float, float] = (123.675, 116.28, 103.53),
                 std: Tuple[float, float, float] = (58.395, 57.12, 57.375),
                 size_divisor: int = 32) -> None:
        super().__init__()
        self.long_edge, self.short_edge, self.size_divisor = long_edge, short_edge, size_divisor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), False)

    def forward(self, images: List[Tensor]) -> Tuple[ImageList, Tensor]:
        resized: List[Tensor] = []
        sizes: List[Tuple[int, int]] = []
        factors: List[List[float]] = []
        for image in images:
            h, w = int(image.shape[-2]), int(image.shape[-1])
            nh, nw = rescale_size(h, w, self.long_edge, self.short_edge)
            pixels = torch.round(image.to(torch.float64) * 255.0)
            out = resize_bilinear_uint8(pixels, nh, nw).to(torch.float32)
            resized.append((out - self.mean) / self.std)
            sizes.append((nh, nw))
            factors.append([1.0 / (nw / w), 1.0 / (nh / h)])
        d = self.size_divisor
        height, width = 0, 0
        for s in sizes:
            height, width = max(height, s[0]), max(width, s[1])
        height, width = (height + d - 1) // d * d, (width + d - 1) // d * d
        batch = resized[0].new_zeros((len(resized), 3, height, width))
        for i, image in enumerate(resized):
            batch[i, :, : image.shape[1], : image.shape[2]] = image
        return ImageList(batch, sizes), torch.tensor(factors, dtype=torch.float32)
