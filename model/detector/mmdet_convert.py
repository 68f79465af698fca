"""Import mmdetection Faster R-CNN checkpoints (`.pth`) into the MMDetFasterRCNN builders.

Key names: mmdetection 3.x and 2.x share them for these configs (``backbone.*``, ``neck.*``,
``rpn_head.*``, ``roi_head.*``; mmdetection's own 3.x upgrade tool changes nothing of them); 1.x
kept the box head at the top level (``bbox_head.*``, ``bbox_roi_extractor.*``) with the
background class first and a box regression for it (fc_cls rows [bg, c1..cN], fc_reg 4 (N + 1)
rows), which is moved last and dropped as mmdetection's ``upgrade_model_version`` does; mmcv
before 1.0 named a deformable conv's offset predictor
``<conv>_offset`` beside the conv (``layer2.0.conv2_offset``) instead of inside it
(``layer2.0.conv2.conv_offset``). All of them map onto ours:

    backbone.X                       -> backbone.body.X   (conv_offset -> offset_conv)
    neck.lateral_convs.i.conv.       -> backbone.fpn.inner_blocks.i.0.
    neck.fpn_convs.i.conv.           -> backbone.fpn.layer_blocks.i.0.
    rpn_head.*, roi_head.*           -> unchanged

The mapped keys are checked against the configuration: missing, unexpected and wrongly shaped
keys are all listed in one MMDetCheckpointError.
"""
import re
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from .mmdet_faster_rcnn import COCO_CLASSES, MMDET_CONFIGS

_RENAMES: Sequence[Tuple[str, str]] = (
    (r"^module\.", ""),  # saved from a DistributedDataParallel wrapper
    (r"^(bbox_head|bbox_roi_extractor)\.", r"roi_head.\1."),  # mmdetection 1.x
    (r"^backbone\.(layer\d+\.\d+)\.conv2_offset\.", r"backbone.\1.conv2.conv_offset."),  # mmcv<1
    (r"^backbone\.", "backbone.body."),
    (r"\.conv_offset\.", ".offset_conv."),
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", r"backbone.fpn.inner_blocks.\1.0."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", r"backbone.fpn.layer_blocks.\1.0."),
)
_DROPPED = re.compile(r"(\.num_batches_tracked$)")  # batch-norm step counters (frozen here)


class MMDetCheckpointError(ValueError):
    """An mmdetection checkpoint that does not fit the named configuration."""


def our_name(key: str) -> str:
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def read_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """(state dict, class names) of an mmdetection .pth file (no code is unpickled). Classes:
    the checkpoint's meta (3.x dataset_meta.classes, 2.x CLASSES) or COCO's 80."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MMDetCheckpointError(f"{path} not found") from None
    except Exception as e:  # pickle errors, truncated files
        raise MMDetCheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from None
    if not isinstance(raw, dict):
        raise MMDetCheckpointError(f"{path} holds a {type(raw).__name__}, not a state dict")
    state = raw.get("state_dict", raw)
    meta = raw.get("meta") or {}
    classes = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return tensors, list(classes) if classes else list(COCO_CLASSES)


def mapped_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    mapped = {our_name(k): v for k, v in state.items() if not _DROPPED.search(k)}
    return _upgrade_box_head(mapped)


def _upgrade_box_head(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """mmdetection 1.x's box head layout (background first, regressed too) -> 2.x/3.x's
    (background last, not regressed); other layouts unchanged."""
    head = "roi_head.bbox_head."
    cls, reg = state.get(head + "fc_cls.weight"), state.get(head + "fc_reg.weight")
    if cls is None or reg is None or reg.shape[0] != 4 * cls.shape[0]:
        return state
    state = dict(state)
    for kind in ("weight", "bias"):
        w = state[f"{head}fc_cls.{kind}"]
        state[f"{head}fc_cls.{kind}"] = torch.cat([w[1:], w[:1]])
        state[f"{head}fc_reg.{kind}"] = state[f"{head}fc_reg.{kind}"][4:]
    return state


def check_keys(model: nn.Module, state: Dict[str, torch.Tensor], config: str) -> None:
    """Raises MMDetCheckpointError listing every missing, unexpected and wrongly shaped key
    (in our names) of `state` for `model`."""
    reference = model.state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = [f"{k} {list(state[k].shape)} (expected {list(reference[k].shape)})"
             for k in sorted(reference) if k in state and state[k].shape != reference[k].shape]
    if missing or unexpected or wrong:
        lines = [f"the checkpoint does not fit mmdetection config {config}:"]
        for what, keys in (("missing", missing), ("unexpected", unexpected),
                           ("wrong shape", wrong)):
            if keys:
                lines.append(f"  {what} ({len(keys)}):")
                lines.extend(f"    {k}" for k in keys)
        raise MMDetCheckpointError("\n".join(lines))


def build(config: str, num_classes: int = 80) -> nn.Module:
    if config not in MMDET_CONFIGS:
        raise MMDetCheckpointError(f"unknown mmdetection config {config!r}; known: "
                                   f"{', '.join(MMDET_CONFIGS)}")
    return MMDET_CONFIGS[config](num_classes)


def import_mmdet(path: str, config: str) -> Tuple[nn.Module, Dict[str, Any]]:
    """(detector in eval mode with the checkpoint's weights, its checkpoint config) for the
    mmdetection checkpoint at `path` trained with mmdetection config `config`."""
    state, classes = read_checkpoint(path)
    state = mapped_state(state)
    model = build(config, len(classes))
    check_keys(model, state, config)
    model.load_state_dict(state)
    return model.eval(), checkpoint_config(config, classes)


def checkpoint_config(config: str, classes: Sequence[str]) -> Dict[str, Any]:
    """The checkpoint config of an imported model: whole-image inference, its preprocessing."""
    return {"architecture": {"builder": MMDET_CONFIGS[config].__name__,
                             "num_classes": len(classes)},
            "classes": list(classes),
            "source": {"mmdetection_config": config},
            "preprocessing": {"resize": "mmcv_keep_ratio", "scale": [1333, 800],
                              "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                              "size_divisor": 32},
            "tile": {"whole_image": True, "size": 1333}}
