"""Checkpoints: weights as safetensors (no pickle) plus a JSON config next to them.

`<name>.safetensors` holds the state dict (half precision when `half=True`, for shipping);
`<name>.json` holds {"architecture": {...builder kwargs}, "classes", "normalisation", "tile",
"training", "metrics", ...}. Loading validates both and raises CheckpointError with the reason.
"""
import json
import os
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "dcnserve-detector/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, or not for this detector."""


def paths(stem: str) -> Tuple[str, str]:
    stem = stem[: -len(".safetensors")] if stem.endswith(".safetensors") else stem
    return stem + ".safetensors", stem + ".json"


def save(model: nn.Module, config: Dict[str, Any], stem: str, half: bool = False) -> None:
    weights_path, config_path = paths(stem)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(weights_path)), exist_ok=True)
    save_file(state, weights_path + ".tmp")
    os.replace(weights_path + ".tmp", weights_path)
    with open(config_path + ".tmp", "w") as f:
        json.dump({"format": FORMAT, **config}, f, indent=2, sort_keys=True)
    os.replace(config_path + ".tmp", config_path)


def load_config(stem: str) -> Dict[str, Any]:
    _, config_path = paths(stem)
    try:
        with open(config_path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint config {config_path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint config {config_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a {FORMAT} checkpoint config")
    if not isinstance(config.get("architecture"), dict):
        raise CheckpointError(f"{config_path} has no architecture section")
    return config


def load_weights(model: nn.Module, stem: str) -> nn.Module:
    weights_path, _ = paths(stem)
    if not os.path.exists(weights_path):
        raise CheckpointError(f"checkpoint weights {weights_path} not found")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {e}") from None
    reference = model.state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = [k for k in reference if k in state and state[k].shape != reference[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{weights_path} does not fit the configured detector: missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})
    return model


def ship(source: str, destination: str, tta: int = 4,
         settings: Optional[Dict[str, Any]] = None) -> None:
    """Copies checkpoint `source` to `destination` in half precision (for the repository).

    settings: architecture keys that change no weights (e.g. {"box_nms_thresh": 0.3}), applied
    to the copy and listed under training.shipped_settings. The copy's validation AP is measured
    as it will load (half-precision weights, these settings) and recorded in its metrics: plain
    ("validation") and with `tta`-view test-time augmentation ("validation_tta<tta>").
    """
    from . import data
    from .evaluate import average_precision
    from .inference import Detector, build_model

    config = load_config(source)
    config.pop("format", None)
    if settings:
        config["architecture"].update(settings)
        config.setdefault("training", {})["shipped_settings"] = dict(settings)
    model = load_weights(build_model(config["architecture"], pretrained_backbone=False), source)
    with torch.no_grad():  # the weights as the half-precision copy will load them
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half())
    split = data.load_split(data.VAL_IMAGES)
    detector = Detector(model, config)
    for views, key in ((1, "validation"), (tta, f"validation_tta{tta}")):
        preds = detector.predict([a.image for a in split], score_threshold=0.0,
                                 max_detections=1000, tta=views)
        config["metrics"][key] = average_precision(preds, [a.boxes for a in split])
    save(model, config, destination, half=True)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="copy a checkpoint in half precision (to ship it)")
    ap.add_argument("source")
    ap.add_argument("destination")
    ap.add_argument("--settings", type=json.loads, default=None,
                    help='architecture settings that change no weights, as JSON, e.g. '
                         '\'{"box_nms_thresh": 0.3}\'')
    args = ap.parse_args()
    ship(args.source, args.destination, settings=args.settings)
