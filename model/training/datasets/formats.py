"""`open_dataset`: a dataset of any supported format, detected from its path, read and checked.

    path                                   format
    *.json                                 COCO detection JSON
    *.csv                                  DeepForest-style box CSV
    *.yaml / *.yml, or a folder with labels/   YOLO
    *.txt (ImageSets/Main/<split>.txt), or a folder with Annotations/ or *.xml   Pascal VOC

`deepforest:NAME` is NAME in the data folder of the installed `deepforest` package (its
annotated aerial images: the shipped tree model's data).
"""
import glob
import importlib.util
import os
from typing import Optional, Sequence

import numpy as np

from .checks import checked
from .coco import read_coco
from .csv_boxes import read_csv_boxes
from .record import DatasetError, DetectionDataset
from .voc import read_voc
from .yolo import read_yolo, yaml_split

PREFIX = "deepforest:"


def deepforest_data_dir() -> str:
    spec = importlib.util.find_spec("deepforest")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the `deepforest` package (data only) is not installed; "
                           "run `make setup`")
    return os.path.join(spec.submodule_search_locations[0], "data")


def resolve(path: str) -> str:
    """`path` with a `deepforest:` prefix made a real path."""
    if path.startswith(PREFIX):
        return os.path.join(deepforest_data_dir(), path[len(PREFIX):])
    return path


def detect_format(path: str) -> str:
    """"coco", "csv", "yolo" or "voc" for the dataset at `path` (DatasetError if none fits)."""
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or folder")
    ext = os.path.splitext(path)[1].lower()
    formats = {".json": "coco", ".csv": "csv", ".yaml": "yolo", ".yml": "yolo", ".txt": "voc"}
    if os.path.isfile(path) and ext in formats:
        return formats[ext]
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "labels")):
            return "yolo"
        if os.path.isdir(os.path.join(path, "Annotations")) or glob.glob(os.path.join(path,
                                                                                      "*.xml")):
            return "voc"
    raise DatasetError(f"{path}: cannot tell the dataset format; expected a COCO .json, a box "
                       ".csv, a YOLO folder (images/, labels/) or data.yaml, or a Pascal VOC "
                       "folder (Annotations/ or *.xml) or image-set .txt")


def open_dataset(path: str, images_dir: Optional[str] = None,
                 ids: Optional[Sequence[str]] = None) -> DetectionDataset:
    """The checked dataset at `path` (format from the path, see the module); `images_dir`:
    where image file names are relative to (default: the annotation file's folder); `ids`: only
    these image ids (file stems; COCO: image ids), in this order."""
    real = resolve(path)
    fmt = detect_format(real)
    category_ids = None
    if fmt == "coco":
        classes, samples, report, category_ids = read_coco(real, images_dir)
    elif fmt == "voc":  # classes are the names found: in the chosen images only
        classes, samples, report = read_voc(real, images_dir, None if ids is None else
                                            [str(i) for i in ids])
    else:
        reader = {"csv": read_csv_boxes, "yolo": read_yolo}[fmt]
        classes, samples, report = reader(real, images_dir)
        if fmt == "yolo":
            category_ids = list(range(len(classes)))
    if ids is not None:
        wanted = {str(i) for i in ids}
        found = {s.image_id for s in samples}
        missing = [i for i in map(str, ids) if i not in found]
        if missing:
            raise DatasetError(f"{path}: no images with ids {missing[:5]}")
        order = {str(i): k for k, i in enumerate(ids)}
        samples = sorted((s for s in samples if s.image_id in wanted),
                         key=lambda s: order[s.image_id])
    if not classes:
        raise DatasetError(f"{path}: no classes (no category, label or class name found)")
    return checked(path, fmt, classes, samples, report, category_ids=category_ids,
                   images_dir=images_dir)


def validation_path(path: str) -> Optional[str]:
    """The validation split a dataset names itself (a YOLO data.yaml's `val`), if any."""
    real = resolve(path)
    if os.path.isfile(real) and real.lower().endswith((".yaml", ".yml")):
        return yaml_split(real, "val")
    return None


def as_single_class(dataset: DetectionDataset, name: str) -> DetectionDataset:
    """`dataset` with every box of every class made one class `name` (Ultralytics'
    `single_cls`)."""
    if len(dataset.classes) > 1:
        dataset.report.note(f"classes merged into one, {name!r}", ", ".join(dataset.classes))
    for s in dataset.samples:
        s.labels = np.ones_like(s.labels)
    dataset.classes, dataset.category_ids = [name], [1]
    return dataset


def with_classes(dataset: DetectionDataset, classes: Sequence[str]) -> DetectionDataset:
    """`dataset` relabelled to `classes` by name (a validation set to its training set's, an
    evaluation set to a checkpoint's); boxes of classes not in `classes` are dropped and
    counted."""
    if list(dataset.classes) == list(classes):
        return dataset
    index = {c: k + 1 for k, c in enumerate(classes)}
    mapping = np.array([0] + [index.get(c, 0) for c in dataset.classes], np.int64)
    for s in dataset.samples:
        new = mapping[s.labels]
        if (new == 0).any():
            dataset.report.note("boxes of classes the model does not have (dropped)",
                                ", ".join(sorted({dataset.classes[k - 1]
                                                  for k in s.labels[new == 0]})),
                                int((new == 0).sum()))
        s.labels = new
        s.keep(new > 0)
    dataset.classes = list(classes)
    dataset.category_ids = list(range(1, len(classes) + 1))
    return dataset
