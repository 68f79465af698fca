"""Train a detector on your own labelled images (resumable).

    python -m model.train --data PATH [--val PATH | --val-fraction 0.1] --out runs/mine \
        [--iterations N] [--config recipe.json] [--init shipped|imagenet|CHECKPOINT]

PATH is a COCO detection JSON, a Pascal VOC folder, a YOLO folder or data.yaml, or a
DeepForest-style CSV (model.training.datasets). The dataset is checked and reported on before
any training step; the classes, their order, the recipe and the tiling go into every checkpoint.
Random crops (model.training.data), SGD with warm-up and step decay, validation AP (overall and
per class) every `eval_every` iterations; in --out: `best` and `last` checkpoints, `resume.pt`
(rerunning the command continues where it stopped, even after kill -9; Ctrl-C saves first),
`metrics.jsonl`, `curves.png` and `split.json`.

The shipped tree model is `--config model/training/recipes/trees.json`, then
`--config model/training/recipes/trees_finetune.json` in the same --out.
"""
import json
import os
import random
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from model.detector import checkpoint

from .data import CropLoader, RandomCrops, decoded_cache
from .datasets import DatasetError, DetectionDataset, check_trainable
from .evaluate import evaluate_dataset
from .progress import MetricsLog, plot_curves
from .splits import split_record, training_splits

DEFAULTS: Dict[str, Any] = {
    # data: set by --data/--val/--val-fraction/--images or a recipe (see model.training.splits)
    "data": None, "images": None, "data_ids": None, "val": None, "val_images": None,
    "val_ids": None, "val_fraction": 0.1, "single_class": None,
    # "shipped" (the tree detector: all but its box predictor when the classes differ),
    # "imagenet" (an ImageNet backbone only) or a checkpoint stem
    "init": "shipped",
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
    # Crops (model.training.data.RandomCrops): crop px, scale range, flips ("horizontal" for
    # photos, "dihedral" for aerial views), random Gaussian blur (probability, max sigma px).
    "crop": 400, "scale": [0.5, 1.25], "flips": "horizontal", "blur": [0.0, 0.0],
    "batch_size": 4, "iterations": 2000, "lr": 0.01, "momentum": 0.9,
    "weight_decay": 1e-4, "warmup": 50, "decay_at": [0.7, 0.9], "eval_every": 100,
    # resume.pt every save_every iterations (and at each evaluation, and on Ctrl-C)
    "save_every": 50, "log_every": 10,
    # data-loader worker processes; decoded images are cached in memory up to cache_gb
    "workers": 2, "cache_gb": 4.0,
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


PREDICTOR = "roi_heads.box_predictor."


def initial_model(cfg: Dict[str, Any], arch_overrides: Dict[str, Any],
                  classes: List[str]) -> Tuple[torch.nn.Module, Dict[str, Any], str]:
    """(model, its architecture, what it starts from in words) for cfg["init"]: "imagenet",
    "shipped" or a checkpoint stem; a checkpoint's architecture is kept (with the recipe's
    `arch_overrides` and this dataset's number of classes), and all of its weights but the box
    predictor's when its classes differ."""
    from model.detector.zoo import build_model

    init, n = cfg["init"], len(classes) + 1
    if init == "imagenet":
        arch = dict(cfg["architecture"], num_classes=n)
        return build_model(arch), arch, "an ImageNet MobileNetV2 backbone"
    stem = checkpoint.DEFAULT_CHECKPOINT if init == "shipped" else init
    source = checkpoint.load_config(stem)
    arch = dict(source["architecture"], **arch_overrides, num_classes=n)
    model = build_model(arch, pretrained_backbone=False)
    same = list(source.get("classes", [])) == list(classes)
    checkpoint.load_weights(model, stem, keep=() if same else (PREDICTOR,))
    kept = "all weights" if same else (f"all weights but the box predictor (its classes "
                                       f"{source.get('classes')} are not {classes})")
    return model, arch, f"{stem}: {kept}"


def checkpoint_config(cfg, arch, train, val, it, metrics, best, seconds) -> Dict[str, Any]:
    metrics = {k: v for k, v in metrics.items() if k != "predictions"}
    return {"architecture": arch, "classes": list(train.classes),
            "normalisation": "torchvision GeneralizedRCNNTransform (ImageNet mean/std)",
            "tile": cfg["tile"],
            "training": {"data": split_record(train, cfg, "data"),
                         "validation": split_record(val, cfg, "val"), "iteration": it,
                         "seconds": round(seconds, 1), "config": cfg},
            "metrics": {"validation": metrics, "best_validation_AP50": best}}


class Run:
    """The state of one training run in folder `out` (what resume.pt holds)."""

    def __init__(self, out: str) -> None:
        self.out, self.path = out, os.path.join(out, "resume.pt")

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def save(self, model, opt, it: int, best: float, seconds: float,
             arch: Dict[str, Any], classes: List[str]) -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": it,
                 "best": best, "seconds": seconds, "architecture": arch, "classes": classes,
                 "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                 "python_rng": random.getstate()}
        torch.save(state, self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)  # a kill -9 leaves the old or the new state

    def load(self) -> Dict[str, Any]:
        return torch.load(self.path, weights_only=False)


def open_splits(cfg: Dict[str, Any], out: str) -> Tuple[DetectionDataset, DetectionDataset]:
    """The checked splits, reported on stderr, their ids written to <out>/split.json."""
    train, val, notes = training_splits(cfg)
    for role, d in (("training", train), ("validation", val)):
        print(f"{role} data: {d.source} ({d.format}): {d.summary()}", file=sys.stderr)
        if role == "training" or d.report is not train.report:
            for line in d.report.lines():
                print(line, file=sys.stderr)
    for note in notes + check_trainable(train, val):
        print(note, file=sys.stderr)
    with open(os.path.join(out, "split.json"), "w") as f:
        json.dump({"classes": train.classes, "train": [s.image_id for s in train.samples],
                   "val": [s.image_id for s in val.samples]}, f, indent=1)
    return train, val


def train(cfg: Dict[str, Any], out: str, arch_overrides: Optional[Dict[str, Any]] = None
          ) -> Dict[str, Any]:
    """Trains (or resumes) the run in `out`; returns its final figures. DatasetError or
    CheckpointError, before any step, when the data or the init cannot be used."""
    from tqdm import tqdm

    from model.runtimes.loading import eager_detector

    os.makedirs(out, exist_ok=True)
    train_set, val = open_splits(cfg, out)
    classes = train_set.classes
    random.seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    run = Run(out)
    start, best, spent, state = 0, -1.0, 0.0, None  # spent: training seconds before this process
    if run.exists():
        from model.detector.zoo import build_model

        state = run.load()
        if state["classes"] != classes:
            raise DatasetError(f"{out} holds a run with classes {state['classes']}, not "
                               f"{classes}: choose another --out")
        arch = state["architecture"]
        model = build_model(arch, pretrained_backbone=False)
        model.load_state_dict(state["model"])
        start, best, spent = state["iteration"], state["best"], state["seconds"]
        print(f"resuming at iteration {start} (best AP50 {best:.3f})", file=sys.stderr)
    else:
        model, arch, origin = initial_model(cfg, arch_overrides or {}, classes)
        print(f"starting from {origin}", file=sys.stderr)
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]  # every trainable parameter
    opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    if state:
        opt.load_state_dict(state["optimizer"])
    cache = decoded_cache(train_set, cfg["cache_gb"] * 2 ** 30)
    crops = RandomCrops(train_set, cfg["crop"], seed=cfg["seed"], scale=tuple(cfg["scale"]),
                        blur=tuple(cfg["blur"]), flips=cfg["flips"], cache=cache)
    log = MetricsLog(out, start)
    detector_config = {"tile": cfg["tile"], "architecture": arch, "classes": classes}
    total, t0, metrics = cfg["iterations"], time.time(), {}
    done, times = start, {"data_s": 0.0, "step_s": 0.0, "n": 0}
    sums = {"data_s": 0.0, "step_s": 0.0, "n": 0}

    def seconds() -> float:
        return spent + time.time() - t0

    def save(it: int) -> None:
        ckpt = checkpoint_config(cfg, arch, train_set, val, it, metrics, best, seconds())
        checkpoint.save(model, ckpt, os.path.join(out, "last"))
        run.save(model, opt, it, best, seconds(), arch, classes)

    tty = sys.stderr.isatty()
    bar = tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True,
               file=sys.stderr, mininterval=0.5 if tty else 30, smoothing=0.05)
    model.train()
    try:
        batches = CropLoader(crops, cfg["batch_size"], cfg["workers"]).batches(start, total)
        if state:  # after the loader, which draws its base seed from torch's generator
            torch.set_rng_state(state["torch_rng"])
            np.random.set_state(state["numpy_rng"])
            random.setstate(state["python_rng"])
        for it in range(start, total):
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, it) * group["lr_mult"]
            t_wait = time.perf_counter()
            batch = next(batches)
            t_step = time.perf_counter()
            losses = model([b[0] for b in batch], [b[1] for b in batch])
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            done = it + 1
            t_end = time.perf_counter()
            for d in (times, sums):
                d["data_s"] += t_step - t_wait
                d["step_s"] += t_end - t_step
                d["n"] += 1
            bar.update(1)
            bar.set_postfix_str(f"loss {loss.item():.3f} lr {lr_at(cfg, it):.4f}", refresh=False)
            if done % cfg["log_every"] == 0 or done == total:
                n = times["n"]
                log.write({"iteration": done, "loss": round(loss.item(), 5),
                           **{k: round(v.item(), 5) for k, v in losses.items()},
                           "lr": lr_at(cfg, it),
                           "images_per_s": round(n * len(batch) / (times["data_s"]
                                                                   + times["step_s"]), 3),
                           "data_s": round(times["data_s"] / n, 4),
                           "step_s": round(times["step_s"] / n, 4)})
                times = {"data_s": 0.0, "step_s": 0.0, "n": 0}
            if done % cfg["eval_every"] == 0 or done == total:
                model.eval()
                metrics = evaluate_dataset(eager_detector(model, detector_config), val)
                model.train()
                metrics.pop("predictions")
                log.write({"iteration": done, **metrics})
                plot_curves(log.records(), os.path.join(out, "curves.png"))
                if metrics["AP50"] > best:
                    best = metrics["AP50"]
                    checkpoint.save(model, checkpoint_config(cfg, arch, train_set, val, done,
                                                             metrics, best, seconds()),
                                    os.path.join(out, "best"))
                save(done)
                per_class = ", ".join(f"{c} {'n/a' if v is None else f'{v:.3f}'}"
                                      for c, v in metrics["per_class"].items())
                bar.write(f"iteration {done}: validation AP {metrics['AP']:.3f} AP50 "
                          f"{metrics['AP50']:.3f} ({per_class}); best AP50 {best:.3f}, "
                          f"{seconds() / 60:.1f} min", file=sys.stderr)
            elif done % cfg["save_every"] == 0:
                save(done)
    except KeyboardInterrupt:
        bar.close()
        save(done)
        print(f"\ninterrupted at iteration {done}: saved {os.path.join(out, 'last')} and "
              f"{run.path}; rerun the same command to continue", file=sys.stderr)
        raise
    bar.close()
    n = max(1, sums["n"])
    return {"best_AP50": best, **metrics, "iterations": done,
            "minutes": round(seconds() / 60, 1), "data_s": round(sums["data_s"] / n, 4),
            "step_s": round(sums["step_s"] / n, 4)}


def load_recipe(path: str) -> Dict[str, Any]:
    """The recipe JSON at `path`; one that names a "base" recipe (a path relative to it) is
    that recipe with its own keys on top ("architecture" merged key by key)."""
    try:
        with open(path) as f:
            recipe = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"recipe {path}: {e}") from None
    base = recipe.pop("base", None)
    if not base:
        return recipe
    merged = load_recipe(os.path.join(os.path.dirname(path), base))
    arch = {**merged.get("architecture", {}), **recipe.pop("architecture", {})}
    merged.update(recipe)
    if arch:
        merged["architecture"] = arch
    return merged


def build_config(args) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(config, the architecture keys the recipe sets) from DEFAULTS, the recipe and the flags."""
    cfg = json.loads(json.dumps(DEFAULTS))
    override = load_recipe(args.config) if args.config else {}
    cfg.update({k: v for k, v in override.items() if k != "architecture"})
    arch_overrides = dict(override.get("architecture", {}))
    if args.plain:
        arch_overrides["deformable"] = False
    cfg["architecture"].update(arch_overrides)
    flags = {"data": args.data, "val": args.val, "val_fraction": args.val_fraction,
             "images": args.images, "iterations": args.iterations, "init": args.init,
             "batch_size": args.batch_size, "workers": args.workers,
             "eval_every": args.eval_every}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if args.data:  # a dataset on the command line replaces the recipe's, and its image subsets
        cfg["data_ids"] = None
    if args.val or args.val_fraction:
        cfg["val_ids"] = None
        if not args.val:
            cfg["val"] = None
    return cfg, arch_overrides


def main(argv: Optional[List[str]] = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m model.train",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="training set: COCO .json, VOC folder or ImageSets .txt, "
                                   "YOLO folder or data.yaml, or box .csv")
    ap.add_argument("--val", help="validation set (any format; default: held out of --data)")
    ap.add_argument("--val-fraction", type=float,
                    help="fraction of --data held out for validation without --val (0.1)")
    ap.add_argument("--images", help="folder the image names of --data are relative to")
    ap.add_argument("--out", default="runs/train", help="run folder (rerun to resume)")
    ap.add_argument("--config", help="recipe JSON overriding the defaults "
                                     "(model/training/recipes/)")
    ap.add_argument("--init", help="shipped (default), imagenet, or a checkpoint stem")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--workers", type=int, help="data-loader processes (2)")
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--plain", action="store_true", help="the ablation: no deformable parts")
    args = ap.parse_args(argv)
    try:
        cfg, arch_overrides = build_config(args)
        result = train(cfg, args.out, arch_overrides)
    except (DatasetError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    print(f"step time {result['step_s']:.3f} s + {result['data_s']:.3f} s waiting for data per "
          f"iteration; curves in {os.path.join(args.out, 'curves.png')}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
