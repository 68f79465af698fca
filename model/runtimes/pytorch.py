"""The PyTorch runtimes of the detector: eager (a model built from a checkpoint) and TorchScript
(an exported folder, see model.runtimes.export). Both implement model.inference.runtime.Runtime."""
import os
from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from model import ops  # noqa: F401  (registers torch.ops.dcn, which the TorchScript graph calls)
from model.detector.probe import OffsetProbe, layer_meta
from model.inference.runtime import DeviceOutOfMemory, read_runtime_meta


def transform_from_config(config: Dict[str, Any]) -> nn.Module:
    """The detector's preprocessing (resize + normalisation), rebuilt from its config: an
    imported mmdetection model's own ("preprocessing"), else FasterRCNN's defaults."""
    if "preprocessing" in config:
        from model.detector.mmdet_transform import MMDetTransform

        pre = config["preprocessing"]
        return MMDetTransform(max(pre["scale"]), min(pre["scale"]), tuple(pre["mean"]),
                              tuple(pre["std"]), int(pre["size_divisor"]))
    arch = config.get("architecture", {})
    return GeneralizedRCNNTransform(int(arch.get("min_size", 800)), int(arch.get("max_size", 1333)),
                                    [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _numpy(out: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {k: out[k].cpu().numpy() for k in ("boxes", "scores", "labels")}


class EagerRuntime:
    """An nn.Module detector (torchvision detection API: list of [3, h, w] images in, list of
    {"boxes", "scores", "labels"} out) on `device`."""

    kind = "torch"

    def __init__(self, model: nn.Module, config: Dict[str, Any], device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.config, self.device = config, str(device)
        self.layers = layer_meta(model)
        self.transform = model.transform
        self._probe = None  # built on first use

    def _forward(self, tiles: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        return self.model(tiles)

    @torch.no_grad()
    def run(self, tiles: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        try:
            outputs = self._forward([torch.from_numpy(t).to(self.device) for t in tiles])
        except torch.OutOfMemoryError as e:
            torch.cuda.empty_cache()  # the failed batch's activations, before a smaller retry
            raise DeviceOutOfMemory(f"out of device memory for {len(tiles)} tiles") from e
        return [_numpy(o) for o in outputs]

    def _offset_probe(self) -> nn.Module:
        if self._probe is None:
            self._probe = OffsetProbe(self.model)
        return self._probe

    @torch.no_grad()
    def probe(self, image: np.ndarray) -> List[np.ndarray]:
        batch, _ = self.transform([torch.from_numpy(image).to(self.device)])
        return [t.cpu().numpy() for t in self._offset_probe()(batch.tensors)]


class TorchScriptRuntime(EagerRuntime):
    """The detector and its offset probe as TorchScript (`detector.pt`, `probe.pt`)."""

    kind = "torchscript"

    def __init__(self, directory: str, device: str = "cpu") -> None:
        meta = read_runtime_meta(directory, self.kind)
        self.config, self.device, self.layers = meta["config"], str(device), meta["layers"]
        self.model = torch.jit.load(os.path.join(directory, "detector.pt"), map_location=device)
        self._probe = torch.jit.load(os.path.join(directory, "probe.pt"), map_location=device)
        self.transform = transform_from_config(self.config).eval()

    def _forward(self, tiles: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        out = self.model(tiles)
        # scripted torchvision detectors return (losses, detections); imported ones detections
        return out[1] if isinstance(out, tuple) else out
