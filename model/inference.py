"""Inference API: build a detector from its config, load checkpoints, predict with tiling.

    detector = load_detector()                  # the shipped default model, eager PyTorch
    results = detector.predict([image, ...], score_threshold=0.3, max_detections=500)
    # per image: {"boxes": [D, 4] x1y1x2y2 in original pixels, "scores": [D], "labels": [D]}

`load_detector` gives a model.tiling.TiledDetector over the eager runtime; model.runtimes gives
the same detector on TorchScript or ONNX Runtime.
"""
from typing import Any, Dict, Optional, Tuple

from torch import nn

from . import checkpoint
from . import detector as builders
from .runtime_torch import EagerRuntime
from .tiling import TiledDetector

BUILDERS = {"dcn_mobilenet_v2_fpn": builders.dcn_mobilenet_v2_fpn,
            "dcn_resnet50_fpn": builders.dcn_resnet50_fpn}


def build_model(architecture: Dict[str, Any], pretrained_backbone: bool = True) -> nn.Module:
    """A detector from a checkpoint's "architecture" section ({"builder": name, **kwargs})."""
    kwargs = dict(architecture)
    name = kwargs.pop("builder", None)
    if name not in BUILDERS:
        raise checkpoint.CheckpointError(f"unknown detector builder {name!r}; "
                                         f"known: {sorted(BUILDERS)}")
    if name == "dcn_mobilenet_v2_fpn":
        kwargs["pretrained_backbone"] = pretrained_backbone
    return BUILDERS[name](**kwargs)


def load_model(path: Optional[str] = None) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model in eval mode, config) saved at checkpoint stem `path` (default: the shipped
    model)."""
    stem = path or checkpoint.DEFAULT_CHECKPOINT
    config = checkpoint.load_config(stem)
    model = build_model(config["architecture"], pretrained_backbone=False)
    checkpoint.load_weights(model, stem)
    return model.eval(), config


def eager_detector(model: nn.Module, config: Dict[str, Any], device: str = "cpu") -> TiledDetector:
    """A tiled detector over an nn.Module detector (eager runtime); config: its checkpoint config
    (tile settings, architecture, ...)."""
    return TiledDetector(EagerRuntime(model, config, device))


def load_detector(path: Optional[str] = None, device: str = "cpu") -> TiledDetector:
    """The detector saved at checkpoint stem `path` (default: the shipped model), eager."""
    return eager_detector(*load_model(path), device)
