"""Detectors by name: build one from a checkpoint's "architecture" section, or load a checkpoint.

    model, config = load_model()            # the shipped default model, eval mode
    model = build_model({"builder": "dcn_resnet50_fpn", "num_classes": 91})

The tiled, runtime-independent detector over such a model is model.runtimes.loading's
`load_detector` / `eager_detector`.
"""
from typing import Any, Dict, Optional, Tuple

from torch import nn

from . import builders, checkpoint
from .mmdet_faster_rcnn import MMDET_CONFIGS

BUILDERS = {"dcn_mobilenet_v2_fpn": builders.dcn_mobilenet_v2_fpn,
            "dcn_resnet50_fpn": builders.dcn_resnet50_fpn,
            # mmdetection's configurations (whole-image models, see model.detector.mmdet_convert)
            **{b.__name__: b for b in MMDET_CONFIGS.values()}}


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
