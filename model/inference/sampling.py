"""Where the deformable layers look: composed sampling locations (Dai et al. 2017, Fig. 5).

For a point of the image, the top deformable layer samples kh*kw locations of its input (its
learned offsets applied to the kernel grid); each of those is an output position of the layer
below, which samples kh*kw locations in turn, and so on: 9 -> 81 -> 729 points for three stacked
3x3 layers. Each point carries the product of the modulation masks along its path.

    layers = detector.sampling_points(image, x, y)    # top layers first (any runtime), via compose
    png = render_sampling_points(image, layers)       # PNG bytes, colour by layer, size by weight

The offsets come from the runtime's probe (model.detector.probe.OffsetProbe); this module is
NumPy only.
"""
import io
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

LAYER_COLOURS = [(255, 64, 64), (255, 200, 0), (64, 160, 255), (160, 255, 96), (220, 96, 255)]


# Points in the deepest composed layer at most: the product of kernel sizes grows by 9 per 3x3
# layer (ResNet-50 with DCN in res3-res5 stacks 13 of them: 9^13 points), so composition stops at
# 4 such layers (6561 points) unless asked for fewer.
MAX_POINTS = 9 ** 4


class TooDeep(ValueError):
    """The asked composition depth would exceed MAX_POINTS points."""


def composable_depth(layers: List[Dict[str, Any]], max_points: int = MAX_POINTS) -> int:
    """How many layers, from the top down, compose into at most `max_points` points."""
    points, depth = 1, 0
    for meta in reversed(layers):
        kh, kw = meta["kernel_size"]
        points *= kh * kw
        if points > max_points:
            break
        depth += 1
    return depth


def checked_depth(layers: List[Dict[str, Any]], depth: Optional[int] = None,
                  max_points: int = MAX_POINTS) -> int:
    """`depth`, or the composable depth when None; TooDeep past it."""
    fits = composable_depth(layers, max_points)
    if depth is None:
        return fits
    if depth > len(layers):
        raise TooDeep(f"the model has {len(layers)} deformable layers; depth {depth} asks for "
                      f"more")
    if depth > fits:
        raise TooDeep(f"depth {depth} would compose more than {max_points} points; at most "
                      f"{fits} of the {len(layers)} deformable layers compose within that")
    return depth


def compose(layers: List[Dict[str, Any]], arrays: Sequence[np.ndarray], input_height: int,
            scale: float, x: float, y: float, depth: Optional[int] = None,
            max_points: int = MAX_POINTS) -> List[Dict[str, Any]]:
    """Composes the probe's outputs (`arrays`: offset_0, mask_0, ... each with a leading batch
    dim of 1, from a network input `input_height` pixels high) for image point (x, y); `scale`
    maps original to network-input pixels. `layers` are bottom first, as the probe lists them.

    Returns one dict per layer for the top `depth` layers (default: as many as compose into at
    most `max_points` points; more raises TooDeep), top layer first: {"layer": name,
    "points": [n, 2] (x, y) in original image pixels, "weights": [n] products of the masks
    along each path}, with n = 9, 81, 729, ... for stacked 3x3 layers. Each layer's output map
    has its own stride (from its offset map's height); a strided layer samples a finer map.
    """
    if not layers:
        return []
    depth = checked_depth(layers, depth, max_points)
    records = [(meta, np.asarray(arrays[2 * i])[0], np.asarray(arrays[2 * i + 1])[0])
               for i, meta in enumerate(layers)]
    net = np.array([[y * scale, x * scale]])  # (y, x) in network-input pixels
    weights = np.ones(1)
    out = []
    for meta, offset, mask in list(reversed(records))[:depth]:
        kh, kw = meta["kernel_size"]
        out_h, out_w = offset.shape[1:]
        out_stride = input_height / out_h
        in_stride = out_stride / np.array(meta["stride"], dtype=np.float64)
        u = (net + 0.5) / out_stride - 0.5  # cells of this layer's output map
        pos = np.clip(np.rint(u), 0, [out_h - 1, out_w - 1]).astype(int)
        off = offset[:, pos[:, 0], pos[:, 1]].reshape(-1, kh * kw, 2, len(pos))[0]
        grid = np.array([(i * meta["dilation"][0], j * meta["dilation"][1])
                         for i in range(kh) for j in range(kw)], dtype=np.float64)
        base = pos * np.array(meta["stride"]) - np.array(meta["padding"])  # [n, 2]
        # points[n, k] = base[n] + grid[k] + (dy, dx) offsets of point k at position n: cells of
        # this layer's input map
        points = base[:, None, :] + grid[None, :, :] + np.transpose(off, (2, 0, 1))
        w = mask[:kh * kw, pos[:, 0], pos[:, 1]].reshape(kh * kw, len(pos)).T
        net = (points.reshape(-1, 2) + 0.5) * in_stride - 0.5
        weights = (weights[:, None] * w).reshape(-1)
        out.append({"layer": meta["layer"], "points": (net / scale)[:, ::-1].astype(np.float64),
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
