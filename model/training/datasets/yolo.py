"""YOLO (Ultralytics layout): a folder with `images/` and `labels/` (label files mirror the
image paths, `images/a/b.jpg` -> `labels/a/b.txt`, one `class cx cy w h` line per box,
normalised to [0, 1]), or a `data.yaml` naming such folders (`path`, `train`, `val`, `names`).
Class names: `names` of `data.yaml` (a list, or a dict by index) or `classes.txt`, in the folder
or beside it. An image without a label file is a negative, as in Ultralytics."""
import glob
import os
from typing import Dict, List, Optional, Tuple

from PIL import Image

from .record import DatasetError, Report, Sample
from .voc import IMAGE_EXTENSIONS, read_class_list


def read_data_yaml(path: str) -> Dict:
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"{path}: not a readable YOLO data.yaml: {e}") from None
    if not isinstance(doc, dict) or "names" not in doc:
        raise DatasetError(f"{path}: a YOLO data.yaml needs 'names'")
    names = doc["names"]
    doc["names"] = ([str(names[k]) for k in sorted(names)] if isinstance(names, dict)
                    else [str(n) for n in names])
    return doc


def yaml_split(path: str, split: str) -> Optional[str]:
    """The folder of split `split` ("train", "val") named by the data.yaml at `path`."""
    doc = read_data_yaml(path)
    if not doc.get(split):
        return None
    base = os.path.join(os.path.dirname(os.path.abspath(path)), str(doc.get("path", "")))
    return os.path.normpath(os.path.join(base, str(doc[split])))


def _class_names(folder: str) -> Optional[List[str]]:
    for d in (folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
        for name in ("data.yaml", "dataset.yaml"):
            if os.path.isfile(os.path.join(d, name)):
                return read_data_yaml(os.path.join(d, name))["names"]
        names = read_class_list(d)
        if names:
            return names
    return None


def _label_path(image_path: str) -> str:
    # Ultralytics' rule: the last "images" component becomes "labels", the extension ".txt"
    head, _, tail = image_path.rpartition(os.sep + "images" + os.sep)
    return os.path.splitext(os.path.join(head, "labels", tail))[0] + ".txt"


def read_yolo(path: str, images_dir: Optional[str] = None) -> Tuple[List[str], List[Sample],
                                                                      Report]:
    """(classes, samples, report) of the YOLO folder or data.yaml at `path` (its train split)."""
    report = Report(path, "yolo")
    names = None
    if os.path.isfile(path):
        names = read_data_yaml(path)["names"]
        path = yaml_split(path, "train")
        if path is None:
            raise DatasetError(f"{report.source}: the data.yaml names no 'train' folder")
    folder = images_dir or path
    if os.path.isdir(os.path.join(folder, "images")):
        folder = os.path.join(folder, "images")
    names = names or _class_names(os.path.abspath(path))
    if not names:
        raise DatasetError(f"{path}: YOLO labels need class names: a data.yaml ('names') or a "
                           "classes.txt (one name a line) in or beside the folder")
    images = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                    if p.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise DatasetError(f"{path}: no images found in {folder}")
    samples = []
    for image_path in images:
        image_id = os.path.splitext(os.path.relpath(image_path, folder))[0]
        label_path = _label_path(os.path.abspath(image_path))
        rows = []
        if os.path.isfile(label_path):
            with open(label_path) as f:
                for line in f:
                    parts = line.split()
                    try:
                        k, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
                    except (IndexError, ValueError):
                        if parts:
                            report.note("unparseable label lines (dropped)", label_path)
                        continue
                    if not 0 <= k < len(names):
                        report.note("boxes of unknown class ids (dropped)", f"{k} in {label_path}")
                        continue
                    rows.append((k, cx, cy, w, h))
        try:
            with Image.open(image_path) as im:
                width, height = im.size
        except OSError:
            width = height = 0  # reported as unreadable by the checks
        boxes = [[(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                  (cy + h / 2) * height] for _, cx, cy, w, h in rows]
        samples.append(Sample.of(image_id, image_path, boxes, [r[0] + 1 for r in rows],
                                 source_id=image_id, width=width, height=height))
    return names, samples, report
