"""The training and validation splits of a run: opened from the command's --data / --val /
--val-fraction (or a recipe's "data", "val", ...), checked together, and recorded in each
checkpoint so that evaluation and release reopen the same validation images.

A recorded split is {"data": path, "images": folder or None, "ids": [image ids] or None (all),
"single_class": name or None}.
"""
from typing import Any, Dict, List, Optional, Tuple

from .datasets import (
    DatasetError,
    DetectionDataset,
    as_single_class,
    open_dataset,
    validation_path,
    with_classes,
)


def _open(path: str, images: Optional[str], ids: Optional[List[str]],
          single_class: Optional[str]) -> DetectionDataset:
    dataset = open_dataset(path, images, ids)
    return as_single_class(dataset, single_class) if single_class else dataset


def training_splits(cfg: Dict[str, Any]) -> Tuple[DetectionDataset, DetectionDataset, List[str]]:
    """(train, validation, what was done, in words) from cfg's "data", "images", "data_ids",
    "val", "val_ids", "val_fraction", "single_class" and "seed"; DatasetError with the reason
    when a split cannot be read (check_trainable then says whether the pair can be trained).
    The validation set takes the training set's classes."""
    if not cfg.get("data"):
        raise DatasetError("no training data: pass --data PATH (or name \"data\" in the recipe)")
    single = cfg.get("single_class")
    train = _open(cfg["data"], cfg.get("images"), cfg.get("data_ids"), single)
    notes = []
    val_path = cfg.get("val") or validation_path(cfg["data"])
    if val_path:
        val = with_classes(_open(val_path, cfg.get("val_images") or cfg.get("images"),
                                 cfg.get("val_ids"), single), train.classes)
    else:
        train, val = train.split(cfg["val_fraction"], cfg["seed"])
        val.source = f"{cfg['data']} (held out)"
        shown = ", ".join(s.image_id for s in val.samples[:10])
        notes.append(f"validation: {len(val)} of {len(train) + len(val)} images held out "
                     f"({cfg['val_fraction']:.0%}, seed {cfg['seed']}): {shown}"
                     + (", ..." if len(val) > 10 else "") + " (listed in split.json)")
    return train, val, notes


def split_record(dataset: DetectionDataset, cfg: Dict[str, Any], role: str) -> Dict[str, Any]:
    """The record of `dataset` (role "data" or "val") that dataset_from_record reopens."""
    held_out = role == "val" and not (cfg.get("val") or validation_path(cfg["data"]))
    path = cfg["data"] if held_out or role == "data" else (cfg.get("val")
                                                           or validation_path(cfg["data"]))
    images = cfg.get("images") if role == "data" or held_out else (cfg.get("val_images")
                                                                   or cfg.get("images"))
    return {"data": path, "images": images, "ids": [s.image_id for s in dataset.samples],
            "single_class": cfg.get("single_class")}


def dataset_from_record(record: Any, config: Dict[str, Any]) -> DetectionDataset:
    """The dataset a checkpoint recorded, in the checkpoint's classes. A list of names is the
    first checkpoints' record: DeepForest images, all boxes one class."""
    if isinstance(record, list):
        record = {"data": "deepforest:", "ids": record, "single_class": "tree"}
    classes = config.get("classes") or []
    dataset = _open(record["data"], record.get("images"), record.get("ids"),
                    record.get("single_class"))
    if not classes:
        raise DatasetError("the checkpoint names no classes")
    return with_classes(dataset, classes)
