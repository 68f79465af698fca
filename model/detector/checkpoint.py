"""Checkpoints: weights as safetensors (no pickle) plus a JSON config next to them.

`<name>.safetensors` holds the state dict (half precision when `half=True`, for shipping);
`<name>.json` holds {"architecture": {...builder kwargs}, "classes", "normalisation", "tile",
"training", "metrics", ...}. Loading validates both and raises CheckpointError with the reason.
"""
import json
import os
from typing import Any, Dict, Sequence, Tuple

FORMAT = "dcnserve-detector/1"
# Parameters renamed since a checkpoint format was first shipped: old prefix -> new prefix.
# (The box pooler became a composition of layers.DeformRoIPool, which owns the offset fc; then it
# took over the box head's first layer, applied per FPN level.)
RENAMED = {"roi_heads.box_roi_pool.offset_fc.": "roi_heads.box_roi_pool.roi_pool.offset_fc.",
           "roi_heads.box_head.fc6.": "roi_heads.box_roi_pool.fc6."}
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
DEFAULT_CHECKPOINT = os.path.join(WEIGHTS_DIR, "dcn_mobilenet_v2_fpn_trees")  # the shipped model


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, or not for this detector."""


def paths(stem: str) -> Tuple[str, str]:
    stem = stem[: -len(".safetensors")] if stem.endswith(".safetensors") else stem
    return stem + ".safetensors", stem + ".json"


def save(model, config: Dict[str, Any], stem: str, half: bool = False) -> None:
    """Writes `model`'s state dict (nn.Module) and `config` at checkpoint `stem`."""
    from safetensors.torch import save_file

    weights_path, config_path = paths(stem)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(weights_path)), exist_ok=True)
    save_file(state, weights_path + ".tmp")
    os.replace(weights_path + ".tmp", weights_path)
    with open(config_path + ".tmp", "w") as f:
        json.dump({"format": FORMAT, **config}, f, indent=2, sort_keys=True)
    os.replace(config_path + ".tmp", config_path)


def current_names(state: Dict[str, Any], reference) -> Dict[str, Any]:
    """`state` with parameters of older layouts renamed to `reference`'s (a state dict or the
    set of its keys)."""
    return {_current_name(k, reference): v for k, v in state.items()}


def _current_name(name: str, reference) -> str:
    for old, new in RENAMED.items():
        if name.startswith(old) and name not in reference:
            return new + name[len(old):]
    return name


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


def load_weights(model, stem: str, keep: Sequence[str] = ()):
    """Loads the weights at checkpoint `stem` into `model` (nn.Module), checking they fit.
    Parameters whose names start with a prefix in `keep` keep `model`'s own values (e.g. the box
    predictor, when fine-tuning for other classes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path, _ = paths(stem)
    if not os.path.exists(weights_path):
        raise CheckpointError(f"checkpoint weights {weights_path} not found")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {e}") from None
    reference = model.state_dict()
    state = current_names(state, reference)
    if keep:
        state = {k: v for k, v in state.items() if not k.startswith(tuple(keep))}
        state.update({k: v for k, v in reference.items() if k.startswith(tuple(keep))})
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = [k for k in reference if k in state and state[k].shape != reference[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{weights_path} does not fit the configured detector: missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]}, "
                              f"wrong shape {wrong[:5]}")
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})
    return model
