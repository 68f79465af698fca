"""What the deformable layers predict, as a module of its own: the probe behind /offsets.

`OffsetProbe` runs the detector's backbone body on a network input and returns the offsets and
masks of its deformable layers; `ImageProbe` adds the detector's own preprocessing (resize,
normalisation, padding) in front, so an exported graph takes an image as the detector does.
Both are traceable: the TorchScript and ONNX Runtime runtimes carry them next to the detector.
"""
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

from model.ops.layers import DeformConv2d


def layer_meta(model: nn.Module) -> List[Dict[str, Any]]:
    """Geometry of the detector's deformable layers in forward order (JSON-serialisable)."""
    return [{"layer": name, "kernel_size": list(m.kernel_size), "stride": list(m.stride),
             "padding": list(m.padding), "dilation": list(m.dilation)}
            for name, m in model.named_modules() if isinstance(m, DeformConv2d)]


class OffsetProbe(nn.Module):
    """The detector's backbone body, returning what its deformable layers predicted instead of
    features. Traceable, so TorchScript and ONNX runtimes carry it next to the detector.

    forward(x [1, 3, h, w], normalised and resized as by the detector's transform) ->
    (offset_0 [1, 2*G*K, H0, W0], mask_0 [1, G*K, H0, W0], offset_1, mask_1, ...), layers in
    forward order; a layer without modulation reports a mask of ones.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.body = model.backbone.body
        self.deformable = [m for m in self.body.modules() if isinstance(m, DeformConv2d)]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        records: List[Tensor] = []

        def record(module, inputs, output):
            offset, mask = module.offsets(inputs[0])
            if mask is None:
                points = offset.shape[1] // 2
                mask = torch.ones_like(offset[:, :points])
            records.extend([offset, mask])

        hooks = [m.register_forward_hook(record) for m in self.deformable]
        try:
            self.body(x)
        finally:
            for h in hooks:
                h.remove()
        return tuple(records)



class ImageProbe(nn.Module):
    """forward(image [3, H, W] float in [0, 1]) -> OffsetProbe's outputs for the detector's
    network input of that image (see model.tiling.network_size for its size)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.transform = model.transform
        self.probe = OffsetProbe(model)

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        batch, _ = self.transform([image])
        return self.probe(batch.tensors)
