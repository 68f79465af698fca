"""Deterministic Faster R-CNN weights from a seed, keyed by mmdetection's parameter names: the
fixture script (run in mmdetection's environment) and our tests (without mmdetection) both call
`seeded_state(keys_and_shapes)` and get identical tensors, so the ~160 MB checkpoint is never
committed. Plain torch + zlib only.

Scales keep the activations of a 50-layer network with random weights moderate (small
residual-branch batch-norm gains) and make the heads produce real detections: RPN logits of
about a unit (sigmoid scores near 1 would tie and make NMS order-dependent), class logits of
a few units, box deltas of a few tenths, offsets of about a pixel.
"""
import math
import zlib
from typing import Dict, Iterable, Sequence, Tuple

import torch

SEED = 23


def _generator(key: str) -> torch.Generator:
    return torch.Generator().manual_seed(SEED * 1_000_003 + zlib.crc32(key.encode()))


def _std(key: str, shape: Sequence[int]) -> float:
    fan_in = max(1, math.prod(shape[1:]))
    if "conv_offset" in key or "_offset." in key:
        return 0.5 / math.sqrt(fan_in)
    if "offset_fc.4" in key:
        return 0.3 / math.sqrt(fan_in)
    if "rpn_cls" in key:  # objectness logits of about a unit: no saturated, tied scores
        return 0.2 / math.sqrt(fan_in)
    if "fc_cls" in key:
        return 1.0 / math.sqrt(fan_in)
    if "rpn_reg" in key or "fc_reg" in key:
        return 0.2 / math.sqrt(fan_in)
    if key.startswith("neck."):
        return 1.0 / math.sqrt(fan_in)
    return math.sqrt(2.0 / fan_in)


def seeded_tensor(key: str, shape: Sequence[int]) -> torch.Tensor:
    g = _generator(key)
    if key.endswith("num_batches_tracked"):
        return torch.zeros((), dtype=torch.int64)
    noise = torch.randn(tuple(shape), generator=g)
    uniform = torch.rand(tuple(shape), generator=g)
    is_bn = ".bn" in key or "downsample.1" in key
    if is_bn and key.endswith("running_var"):
        return 0.8 + 0.4 * uniform
    if is_bn and key.endswith("running_mean"):
        return 0.1 * noise
    if is_bn and key.endswith("weight"):
        return (0.2 if ".bn3." in key else 1.0) * (1.0 + 0.1 * noise)
    if key.endswith("bias"):
        return (0.05 * noise) if "cls" not in key else (0.3 * noise - 1.0)
    return _std(key, shape) * noise


def seeded_state(keys: Iterable[Tuple[str, Sequence[int]]]) -> Dict[str, torch.Tensor]:
    """{mmdetection key: tensor} for (key, shape) pairs."""
    return {key: seeded_tensor(key, shape) for key, shape in keys}
