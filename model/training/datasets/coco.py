"""COCO detection JSON: {"images": [{"id", "file_name", "width", "height"}], "annotations":
[{"id", "image_id", "category_id", "bbox": [x, y, w, h], "iscrowd"}], "categories": [{"id",
"name"}]}. `file_name` is relative to `images_dir` (default: the JSON's folder). Category ids may
be any integers: classes are the categories in id order. `iscrowd` boxes are kept as ignore
regions, as COCO's evaluation does."""
import json
import os
from typing import List, Optional, Tuple

from .record import DatasetError, Report, Sample


def read_coco(path: str, images_dir: Optional[str] = None) -> Tuple[List[str], List[Sample],
                                                                      Report, List[int]]:
    """(classes, samples, report, category ids in class order) of the COCO file at `path`."""
    report = Report(path, "coco")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable COCO JSON file: {e}") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                            for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{path}: a COCO detection file needs lists 'images', 'annotations' "
                           "and 'categories'")
    root = images_dir or os.path.dirname(os.path.abspath(path))
    categories = {}
    for c in doc["categories"]:
        if c["id"] in categories:
            report.note("duplicate category ids (first kept)", str(c["id"]))
        else:
            categories[c["id"]] = str(c["name"])
    ids = sorted(categories)
    label_of = {cid: k + 1 for k, cid in enumerate(ids)}
    images, rows = {}, {}
    for im in doc["images"]:
        if im["id"] in images:
            report.note("duplicate image ids (first kept)", str(im["id"]))
            continue
        images[im["id"]] = im
        rows[im["id"]] = []
    for a in doc["annotations"]:
        if a.get("image_id") not in images:
            report.note("annotations of unknown image ids (dropped)", str(a.get("image_id")))
        elif a.get("category_id") not in label_of:
            report.note("annotations of unknown category ids (dropped)", str(a.get("category_id")))
        elif not (isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4):
            report.note("annotations without a 4-number bbox (dropped)", str(a.get("id")))
        else:
            x, y, w, h = (float(v) for v in a["bbox"])
            rows[a["image_id"]].append(([x, y, x + w, y + h], label_of[a["category_id"]],
                                        bool(a.get("iscrowd", 0))))
    samples = []
    for image_id, im in images.items():
        boxes = [r[0] for r in rows[image_id]]
        samples.append(Sample.of(str(image_id), os.path.join(root, im["file_name"]), boxes,
                                 [r[1] for r in rows[image_id]], [r[2] for r in rows[image_id]],
                                 source_id=image_id, width=int(im.get("width", 0)),
                                 height=int(im.get("height", 0))))
    return [categories[i] for i in ids], samples, report, ids
