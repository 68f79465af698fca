"""Import torchvision Faster R-CNN weights into the matching DCN detector.

The DCN detector keeps torchvision's parameter names; it only adds the offset/mask predictors
(``*.offset_conv.*``) and the RoI offset fc (``roi_heads.box_roi_pool.roi_pool.offset_fc.*``), which
stay zero-initialised, so the converted detector computes exactly what the torchvision one did.
"""
from typing import Dict, Union

import torch
from torch import nn


def is_deformable_parameter(name: str) -> bool:
    return ".offset_conv." in name or name.startswith("roi_heads.box_roi_pool.roi_pool.offset_fc.")


def load_torchvision_weights(detector: nn.Module,
                             source: Union[nn.Module, Dict[str, torch.Tensor]]) -> nn.Module:
    """Copies a torchvision detector's state dict (or the module) into `detector`.

    Raises ValueError naming the keys when the architectures do not match (anything missing
    other than the deformable predictors, or anything left over).
    """
    from .checkpoint import current_names

    state = source.state_dict() if isinstance(source, nn.Module) else source
    state = current_names(state, detector.state_dict())  # e.g. fc6, applied by the DCN pooler
    try:
        missing, unexpected = detector.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"state dict does not fit the detector: {e}") from None
    missing = [k for k in missing if not is_deformable_parameter(k)]
    if missing or unexpected:
        raise ValueError(f"state dict does not fit the detector: missing {missing[:8]}, "
                         f"unexpected {list(unexpected)[:8]}")
    return detector
