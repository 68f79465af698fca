"""Where the deformable layers look: composed sampling locations (Dai et al. 2017, Fig. 5).

For a point of the image, the top deformable layer samples kh*kw locations of its input (its
learned offsets applied to the kernel grid); each of those is an output position of the layer
below, which samples kh*kw locations in turn, and so on: 9 -> 81 -> 729 points for three stacked
3x3 layers. Each point carries the product of the modulation masks along its path.

    layers = detector.sampling_points(image, x, y)    # top layer first (any runtime), via compose
    png = render_sampling_points(image, layers)       # PNG bytes, colour by layer, size by weight

The offsets come from the runtime's probe (model.detector.probe.OffsetProbe); this module is
NumPy only.
"""
import io
from typing import Any, Dict, List, Sequence

import numpy as np
from PIL import Image, ImageDraw

LAYER_COLOURS = [(255, 64, 64), (255, 200, 0), (64, 160, 255), (160, 255, 96), (220, 96, 255)]


def compose(layers: List[Dict[str, Any]], arrays: Sequence[np.ndarray], input_height: int,
            scale: float, x: float, y: float) -> List[Dict[str, Any]]:
    """Composes the probe's outputs (`arrays`: offset_0, mask_0, ... each with a leading batch
    dim of 1, from a network input `input_height` pixels high) for image point (x, y); `scale`
    maps original to network-input pixels.

    Returns one dict per layer, top layer first: {"layer": name, "points": [n, 2] (x, y) in
    original image pixels, "weights": [n] products of the masks along each path}, with
    n = 9, 81, 729, ... for stacked 3x3 layers.
    """
    if not layers:
        return []
    records = [(meta, np.asarray(arrays[2 * i])[0], np.asarray(arrays[2 * i + 1])[0])
               for i, meta in enumerate(layers)]
    # The stacked layers share one map; its stride in network-input pixels:
    stride = input_height / records[-1][1].shape[1]
    u = np.array([[(y * scale + 0.5) / stride - 0.5, (x * scale + 0.5) / stride - 0.5]])
    weights = np.ones(1)
    out = []
    for meta, offset, mask in reversed(records):
        kh, kw = meta["kernel_size"]
        out_h, out_w = offset.shape[1:]
        pos = np.clip(np.rint(u), 0, [out_h - 1, out_w - 1]).astype(int)
        off = offset[:, pos[:, 0], pos[:, 1]].reshape(-1, kh * kw, 2, len(pos))[0]
        grid = np.array([(i * meta["dilation"][0], j * meta["dilation"][1])
                         for i in range(kh) for j in range(kw)], dtype=np.float64)
        base = pos * np.array(meta["stride"]) - np.array(meta["padding"])  # [n, 2]
        # points[n, k] = base[n] + grid[k] + (dy, dx) offsets of point k at position n
        points = base[:, None, :] + grid[None, :, :] + np.transpose(off, (2, 0, 1))
        w = mask[:kh * kw, pos[:, 0], pos[:, 1]].reshape(kh * kw, len(pos)).T
        u = points.reshape(-1, 2)
        weights = (weights[:, None] * w).reshape(-1)
        image_yx = ((u + 0.5) * stride - 0.5) / scale
        out.append({"layer": meta["layer"], "points": image_yx[:, ::-1].astype(np.float64),
                    "weights": weights.astype(np.float64)})
    return out


def render_sampling_points(image, layers: List[Dict[str, np.ndarray]], x: float = None,
                           y: float = None) -> bytes:
    """PNG of `image` with each layer's points (colour by layer, radius by weight)."""
    if hasattr(image, "detach"):  # a [3, H, W] float tensor in [0, 1]
        image = np.clip(image.detach().cpu().numpy().transpose(1, 2, 0) * 255, 0, 255)
    array = np.asarray(image).astype(np.uint8, copy=False)
    canvas = Image.fromarray(array).convert("RGB")
    draw = ImageDraw.Draw(canvas, "RGBA")
    for depth, layer in reversed(list(enumerate(layers))):
        depth = layer.get("index", depth)  # a single layer picked from the stack keeps its colour
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
