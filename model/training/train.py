"""Train the tree-crown detector on DeepForest's images (resumable).

    python -m model.train [--config config.json] [--out runs/dcn] [--iterations N]

The shipped model's recipe is two stages in one run folder: the defaults (2000 iterations), then
`--config model/recipes/trees_finetune.json` (600 more at 0.001 then 0.0001, with blur).

Random crops with flips and jitter, SGD with warm-up and step decay, validation AP on SOAP_061
every `eval_every` iterations, the best checkpoint kept (`<out>/best`), the latest one
(`<out>/last`, with optimizer state) for resuming: rerunning the command continues where it
stopped.
"""
import argparse
import json
import os
import random
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch

from model.detector import checkpoint

from . import data
from .evaluate import average_precision

DEFAULTS: Dict[str, Any] = {
    "architecture": {"builder": "dcn_mobilenet_v2_fpn", "num_classes": 2, "deformable": True,
                     "min_size": 400, "max_size": 400, "box_detections_per_img": 500,
                     # FPN-style anchors (three sizes per level) and a 0.5 IoU for RPN positives:
                     # 15-60 px crowns otherwise get one low-quality anchor each.
                     "anchor_sizes": [[16, 24, 32], [32, 48, 64], [64, 96, 128],
                                      [128, 192, 256]],
                     "rpn_fg_iou_thresh": 0.5, "rpn_bg_iou_thresh": 0.3,
                     "box_batch_size_per_image": 256,
                     # NMS IoU of the box head (torchvision: 0.5): on SOAP_061 0.3 gave +0.05-0.07
                     # AP50 at each of 6 checkpoints (a crown's partial boxes overlap it by
                     # 0.3-0.5) and no loss on the dense training images. Used by validation.
                     "box_nms_thresh": 0.3,
                     # Train all but the stem: the stride-8 level's features (block 4) are
                     # frozen ImageNet features otherwise, and aerial crowns are not ImageNet.
                     "trainable_layers": 5},
    # Dai et al. 2017 (sec. 4): the deformable RoI pooling's offset fc learns at 0.01x the base
    # rate in Faster R-CNN (at 1x its offsets grow to ~0.7 bins on average and jitter the pooling).
    "offset_fc_lr_mult": 0.01,
    # Random Gaussian blur (probability, max sigma px), off in the first stage; the fine-tuning
    # stage (model/recipes/trees_finetune.json) turns it on: a model trained on sharp crops only
    # lost half its SOAP_061 AP to a 0.5 px blur, and SOAP is softer than the training sites.
    "crop": 400, "scale": [0.5, 1.25], "blur": [0.0, 0.0], "batch_size": 4, "iterations": 2000,
    "lr": 0.01, "momentum": 0.9,
    "weight_decay": 1e-4, "warmup": 50, "decay_at": [0.7, 0.9], "eval_every": 100,
    # tile overlap: at least the largest annotated crown (108 px) of the 400 px tile
    "seed": 0, "threads": 0, "tile": {"size": 400, "overlap": 0.27, "nms_iou": 0.4},
}


def lr_at(cfg: Dict[str, Any], it: int) -> float:
    lr = cfg["lr"] * min(1.0, (it + 1) / cfg["warmup"])
    for frac in cfg["decay_at"]:
        if it >= frac * cfg["iterations"]:
            lr *= 0.1
    return lr


def param_groups(model, cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Trainable parameters, the RoI offset fc's (roi_heads.box_roi_pool.roi_pool.offset_fc)
    apart with its learning-rate multiplier."""
    offset_fc, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (offset_fc if ".box_roi_pool.roi_pool.offset_fc." in name else rest).append(p)
    mult = float(cfg.get("offset_fc_lr_mult", 1.0))
    if not offset_fc or mult == 1.0:  # one group (as checkpoints of 1x runs were saved)
        return [{"params": rest + offset_fc, "lr_mult": 1.0}]
    return [{"params": rest, "lr_mult": 1.0}, {"params": offset_fc, "lr_mult": mult}]


def validate(model, split: List[data.AnnotatedImage], cfg) -> Dict[str, float]:
    from model.runtimes.loading import eager_detector

    detector = eager_detector(model, {"tile": cfg["tile"]})
    preds = detector.predict([a.image for a in split], score_threshold=0.0, max_detections=1000)
    return average_precision(preds, [a.boxes for a in split])


def checkpoint_config(cfg, it, metrics, best, seconds: float = 0.0) -> Dict[str, Any]:
    return {"architecture": cfg["architecture"], "classes": list(data.CLASSES),
            "normalisation": "torchvision GeneralizedRCNNTransform (ImageNet mean/std)",
            "tile": cfg["tile"],
            "training": {"images": list(data.TRAIN_IMAGES), "validation": list(data.VAL_IMAGES),
                         "held_out": list(data.HELD_OUT_IMAGES), "iteration": it,
                         "seconds": round(seconds, 1), "config": cfg},
            "metrics": {"validation": metrics, "best_validation_AP50": best}}


def train(cfg: Dict[str, Any], out: str) -> Dict[str, float]:
    from model.detector.zoo import build_model

    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    model = build_model(cfg["architecture"])
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]  # every trainable parameter
    opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    start, best, spent = 0, -1.0, 0.0  # spent: training seconds before this process
    last = os.path.join(out, "last")
    if os.path.exists(last + ".json"):  # resume
        state = checkpoint.load_config(last)
        checkpoint.load_weights(model, last)
        opt.load_state_dict(torch.load(os.path.join(out, "optimizer.pt"), weights_only=True))
        for group, spec in zip(opt.param_groups, groups):  # states saved before lr_mult existed
            group["lr_mult"] = spec["lr_mult"]
        start = state["training"]["iteration"]
        best = state["metrics"]["best_validation_AP50"]
        spent = float(state["training"].get("seconds", 0.0))
        print(f"resuming at iteration {start} (best AP50 {best:.3f})", flush=True)
    crops = data.RandomTreeCrops(data.load_split(data.TRAIN_IMAGES), cfg["crop"],
                                 seed=cfg["seed"] + start, scale=tuple(cfg["scale"]),
                                 blur=tuple(cfg["blur"]))
    val = data.load_split(data.VAL_IMAGES)
    stream = iter(crops)
    model.train()
    t0, seen, metrics = time.time(), 0, {}
    for it in range(start, cfg["iterations"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, it) * group["lr_mult"]
        batch = [next(stream) for _ in range(cfg["batch_size"])]
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        seen += len(batch)
        done = it + 1
        if done % 10 == 0:
            rate = seen / (time.time() - t0)
            bar = "#" * int(30 * done / cfg["iterations"])
            print(f"[{bar:<30}] {done}/{cfg['iterations']} loss {loss.item():.3f} "
                  + " ".join(f"{k[5:]}={v.item():.3f}" for k, v in losses.items())
                  + f" {rate:.2f} img/s lr {lr_at(cfg, it):.4f}", flush=True)
        if done % cfg["eval_every"] == 0 or done == cfg["iterations"]:
            model.eval()
            metrics = validate(model, val, cfg)
            model.train()
            seconds = spent + time.time() - t0
            if metrics["AP50"] > best:
                best = metrics["AP50"]
                checkpoint.save(model, checkpoint_config(cfg, done, metrics, best, seconds),
                                os.path.join(out, "best"))
            checkpoint.save(model, checkpoint_config(cfg, done, metrics, best, seconds), last)
            torch.save(opt.state_dict(), os.path.join(out, "optimizer.pt"))
            print(f"iteration {done}: validation {json.dumps(metrics)} (best AP50 {best:.3f}, "
                  f"{seconds / 60:.1f} min)", flush=True)
    return {"best_AP50": best, **metrics, "minutes": round((spent + time.time() - t0) / 60, 1)}


def main(argv: List[str] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="JSON file overriding the defaults")
    ap.add_argument("--out", default="runs/dcn")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--plain", action="store_true", help="the ablation: no deformable parts")
    args = ap.parse_args(argv)
    cfg = json.loads(json.dumps(DEFAULTS))
    if args.config:
        with open(args.config) as f:
            override = json.load(f)
        cfg.update({k: v for k, v in override.items() if k != "architecture"})
        cfg["architecture"].update(override.get("architecture", {}))
    if args.iterations:
        cfg["iterations"] = args.iterations
    if args.plain:
        cfg["architecture"]["deformable"] = False
    os.makedirs(args.out, exist_ok=True)
    result = train(cfg, args.out)
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
