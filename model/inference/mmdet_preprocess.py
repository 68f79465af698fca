"""mmdetection's test-time preprocessing in NumPy, for runtimes whose graph starts at the network
input (an imported model on ONNX Runtime): keep-ratio resize as ``mmcv.imrescale`` (OpenCV's
fixed-point uint8 bilinear, bit for bit), normalisation in float32, zero padding bottom/right to
a multiple of `size_divisor`. model.detector.mmdet_transform is the same pipeline in torch (for
the eager and TorchScript graphs); both are held to cv2.resize by tests/detector.

OpenCV's uint8 bilinear: 11-bit coefficients, a horizontal pass in int32, and a vertical pass as
its SIMD code rounds it (``VResizeLinearVec_32s8u``: inputs shifted right by 4, high halves of
16-bit products, a rounding shift by 2). Integer arithmetic reproduces it here exactly.
"""
from typing import Dict, Tuple

import numpy as np


def rescale_size(height: int, width: int, long_edge: int = 1333,
                 short_edge: int = 800) -> Tuple[int, int]:
    """mmcv.rescale_size with keep_ratio: the resized (height, width), in double precision."""
    scale = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def padded_size(height: int, width: int, divisor: int = 32) -> Tuple[int, int]:
    return (height + divisor - 1) // divisor * divisor, (width + divisor - 1) // divisor * divisor


def _taps(src: int, dst: int, clamp_weights: bool) -> Tuple[np.ndarray, ...]:
    """OpenCV's taps along one axis: indices i0, i1 [dst] and int64 weights w0, w1 [dst] (sum
    2048). Past the borders the horizontal taps move onto the edge pixel (`clamp_weights`); the
    vertical ones keep their weights on clipped rows."""
    scale = 1.0 / (float(dst) / float(src))  # as cv::resize: 1 / inv_scale
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f)
    f = f - s
    if clamp_weights:
        f = np.where((s < 0) | (s >= src - 1), np.float32(0), f)
    w0 = np.round((np.float32(1) - f) * np.float32(2048)).astype(np.int64)  # half even: cvRound
    w1 = np.round(f * np.float32(2048)).astype(np.int64)
    i0 = np.clip(s, 0, src - 1).astype(np.int64)
    i1 = np.clip(s + 1, 0, src - 1).astype(np.int64)
    return i0, i1, w0, w1


def resize_bilinear_uint8(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2.resize(..., INTER_LINEAR): image [C, H, W] integers 0..255 -> [C, height, width]
    uint8."""
    src = image.astype(np.int64)
    x0, x1, a0, a1 = _taps(src.shape[2], width, True)
    y0, y1, b0, b1 = _taps(src.shape[1], height, False)
    rows = src[:, :, x0] * a0 + src[:, :, x1] * a1  # [C, H, width]
    b0, b1 = b0[:, None], b1[:, None]
    out = ((rows[:, y0] >> 4) * b0 >> 16) + ((rows[:, y1] >> 4) * b1 >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def preprocess(image: np.ndarray, pre: Dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """image [3, h, w] float32 in [0, 1] (RGB), pre: a checkpoint config's "preprocessing" ->
    (network input [1, 3, H, W] float32, resized size [2] float32 (h', w'), box scale [2]
    float32: image pixels per network-input pixel (x, y), i.e. 1 / mmdetection's scale_factor,
    taken in double precision as mmdetection does before rounding to float32)."""
    h, w = image.shape[1:]
    long_edge, short_edge = max(pre["scale"]), min(pre["scale"])
    nh, nw = rescale_size(h, w, long_edge, short_edge)
    pixels = np.round(image.astype(np.float64) * 255.0)
    resized = resize_bilinear_uint8(pixels, nh, nw).astype(np.float32)
    mean = np.asarray(pre["mean"], np.float32)[:, None, None]
    std = np.asarray(pre["std"], np.float32)[:, None, None]
    ph, pw = padded_size(nh, nw, int(pre["size_divisor"]))
    out = np.zeros((1, 3, ph, pw), np.float32)
    out[0, :, :nh, :nw] = (resized - mean) / std
    return (out, np.array([nh, nw], np.float32),
            np.array([1.0 / (nw / w), 1.0 / (nh / h)], np.float32))
