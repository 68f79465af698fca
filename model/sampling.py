"""Where the deformable layers look: composed sampling locations (Dai et al. 2017, Fig. 5).

For a point of the image, the top deformable layer samples kh*kw locations of its input (its
learned offsets applied to the kernel grid); each of those is an output position of the layer
below, which samples kh*kw locations in turn, and so on: 9 -> 81 -> 729 points for three stacked
3x3 layers. Each point carries the product of the modulation masks along its path.

    layers = sampling_points(detector, image, x, y)   # top layer first
    png = render_sampling_points(image, layers)       # PNG bytes, colour by layer, size by weight
"""
import io
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from .inference import Detector, as_tensor
from .layers import DeformConv2d

LAYER_COLOURS = [(255, 64, 64), (255, 200, 0), (64, 160, 255), (160, 255, 96), (220, 96, 255)]


def _capture(detector: Detector, image) -> Tuple[List[tuple], float]:
    """Runs the backbone on `image`; returns each deformable layer's (name, module, offsets,
    masks) in forward order, and the scale from original to network-input pixels."""
    model = detector.model
    records, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, DeformConv2d):
            def hook(mod, inputs, output, name=name):
                offset, mask = mod.offsets(inputs[0])
                records.append((name, mod, offset[0], mask[0] if mask is not None else None))
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            tensor = as_tensor(image).to(detector.device)
            batch, _ = model.transform([tensor])
            model.backbone(batch.tensors)
    finally:
        for h in hooks:
            h.remove()
    scale = batch.image_sizes[0][0] / tensor.shape[1]
    return records, scale


def sampling_points(detector: Detector, image, x: float, y: float) -> List[Dict[str, np.ndarray]]:
    """Composed sampling locations of the stacked deformable layers for image point (x, y).

    Returns one dict per layer, top layer first: {"layer": module name, "points": [n, 2] (x, y)
    in original image pixels, "weights": [n] products of the masks (1 without masks)}, with
    n = 9, 81, 729, ... for 3x3 kernels.
    """
    records, scale = _capture(detector, image)
    if not records:
        return []
    height, width = as_tensor(image).shape[1:]
    input_h = records[-1][2].shape[1]  # all stacked layers share one map size here
    stride = (height * scale) / input_h
    # Output-map position of the image point in the top layer, then down the stack.
    u = np.array([[(y * scale + 0.5) / stride - 0.5, (x * scale + 0.5) / stride - 0.5]])
    weights = np.ones(1)
    layers = []
    for name, module, offset, mask in reversed(records):
        kh, kw = module.kernel_size
        out_h, out_w = offset.shape[1:]
        pos = np.clip(np.rint(u), 0, [out_h - 1, out_w - 1]).astype(int)
        off = offset[:, pos[:, 0], pos[:, 1]].cpu().numpy().reshape(-1, kh * kw, 2, len(pos))[0]
        grid = np.array([(i * module.dilation[0], j * module.dilation[1])
                         for i in range(kh) for j in range(kw)], dtype=np.float64)
        base = pos * np.array(module.stride) - np.array(module.padding)  # [n, 2]
        # points[n, k] = base[n] + grid[k] + (dy, dx) offsets of point k at position n
        points = base[:, None, :] + grid[None, :, :] + np.transpose(off, (2, 0, 1))
        w = np.ones((len(pos), kh * kw))
        if mask is not None:
            w = mask[:, pos[:, 0], pos[:, 1]].cpu().numpy().reshape(kh * kw, len(pos)).T
        u = points.reshape(-1, 2)
        weights = (weights[:, None] * w).reshape(-1)
        image_yx = ((u + 0.5) * stride - 0.5) / scale
        layers.append({"layer": name, "points": image_yx[:, ::-1].copy(), "weights": weights})
    return layers


def render_sampling_points(image, layers: List[Dict[str, np.ndarray]], x: float = None,
                           y: float = None) -> bytes:
    """PNG of `image` with each layer's points (colour by layer, radius by weight)."""
    array = np.asarray(image) if not isinstance(image, torch.Tensor) else (
        image.permute(1, 2, 0).mul(255).clamp(0, 255).byte().numpy())
    canvas = Image.fromarray(array).convert("RGB")
    draw = ImageDraw.Draw(canvas, "RGBA")
    for depth, layer in reversed(list(enumerate(layers))):
        colour = LAYER_COLOURS[depth % len(LAYER_COLOURS)]
        w = layer["weights"] / max(float(layer["weights"].max()), 1e-6)
        for (px, py), wi in zip(layer["points"], w):
            r = 1.0 + 3.0 * float(wi)
            draw.ellipse([px - r, py - r, px + r, py + r], fill=colour + (200,))
    if x is not None and y is not None:
        draw.line([x - 6, y, x + 6, y], fill=(255, 255, 255, 255), width=2)
        draw.line([x, y - 6, x, y + 6], fill=(255, 255, 255, 255), width=2)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
