"""Our parameter names back to mmdetection's (the inverse of model.detector.mmdet_convert's
mapping, written independently), for tests that build mmdetection-style checkpoints."""
import re

import torch

_INVERSE = (
    (r"^backbone\.body\.", "backbone."),
    (r"\.offset_conv\.", ".conv_offset."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.0\.", r"neck.lateral_convs.\1.conv."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.0\.", r"neck.fpn_convs.\1.conv."),
)


def mmdet_name(key: str) -> str:
    for pattern, replacement in _INVERSE:
        key = re.sub(pattern, replacement, key)
    return key


def mmdet_state(model, legacy: bool = False):
    """model's state dict in mmdetection 3.x names (legacy: mmcv<1 `conv2_offset`, 1.x
    top-level box head with the background class first and a (here random) regression for it),
    with the batch-norm counters mmdetection saves."""
    state = {}
    for key, value in model.state_dict().items():
        name = mmdet_name(key)
        if legacy:
            name = re.sub(r"\.conv2\.conv_offset\.", ".conv2_offset.", name)
            name = re.sub(r"^roi_head\.", "", name)
            if name.startswith("bbox_head.fc_cls."):
                value = torch.cat([value[-1:], value[:-1]])
            if name.startswith("bbox_head.fc_reg."):
                value = torch.cat([torch.randn_like(value[:4]), value])
        state[name] = value
        if name.endswith(".running_var"):
            state[name[: -len("running_var")] + "num_batches_tracked"] = value.new_zeros(())
    return state
