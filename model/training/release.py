"""The release step: a training checkpoint copied in half precision for the repository, with
the copy's own validation AP (on the validation split the run recorded) measured and recorded.

    python -m model.release runs/mine/best releases/mine [--settings '{"box_nms_thresh": 0.3}']

Serve the copy with `DCN_CHECKPOINT=releases/mine make serve`.
"""
import json
from typing import Any, Dict, List, Optional

import torch

from model.detector.checkpoint import CheckpointError, load_config, load_weights, save
from model.detector.zoo import build_model
from model.runtimes.loading import eager_detector

from .datasets import DatasetError
from .evaluate import evaluate_dataset, validation_dataset


def ship(source: str, destination: str, tta: int = 4,
         settings: Optional[Dict[str, Any]] = None) -> None:
    """Copies checkpoint `source` to `destination` in half precision (for the repository).

    settings: architecture keys that change no weights (e.g. {"box_nms_thresh": 0.3}), applied
    to the copy and listed under training.shipped_settings. The copy's validation AP is measured
    as it will load (half-precision weights, these settings) and recorded in its metrics: plain
    ("validation") and with `tta`-view test-time augmentation ("validation_tta<tta>").
    """
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
    split = validation_dataset(config)
    detector = eager_detector(model, config)
    for views, key in ((1, "validation"), (tta, f"validation_tta{tta}")):
        result = evaluate_dataset(detector, split, views)
        result.pop("predictions")
        config.setdefault("metrics", {})[key] = result
    save(model, config, destination, half=True)


def main(argv: Optional[List[str]] = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m model.release",
                                 description="copy a checkpoint in half precision (to ship it)")
    ap.add_argument("source")
    ap.add_argument("destination", help="checkpoint stem of the copy")
    ap.add_argument("--tta", type=int, default=4, choices=(1, 2, 4, 8))
    ap.add_argument("--settings", type=json.loads, default=None,
                    help='architecture settings that change no weights, as JSON, e.g. '
                         '\'{"box_nms_thresh": 0.3}\'')
    args = ap.parse_args(argv)
    try:
        ship(args.source, args.destination, tta=args.tta, settings=args.settings)
    except (CheckpointError, DatasetError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"released {args.destination}: validation "
          f"{json.dumps(load_config(args.destination)['metrics']['validation'])}")


if __name__ == "__main__":
    main()
