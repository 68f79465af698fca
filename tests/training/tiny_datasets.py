"""Tiny real datasets for the training tests: DeepForest's SOAP_061 aerial image cut into four
200 x 200 quadrants, with the Alive/Dead labels of its testfile_multi.csv, written in each
format the training command reads."""
import csv
import json
import os
import xml.etree.ElementTree as ET
from typing import List, Tuple

import numpy as np
from PIL import Image

from model.training.datasets import deepforest_data_dir

CLASSES = ["Alive", "Dead"]
Item = Tuple[str, np.ndarray, np.ndarray, List[str]]  # name, image, boxes [K, 4], class names


def quadrants() -> List[Item]:
    d = deepforest_data_dir()
    image = np.asarray(Image.open(os.path.join(d, "SOAP_061.png")).convert("RGB"))
    with open(os.path.join(d, "testfile_multi.csv")) as f:
        rows = list(csv.DictReader(f))
    items = []
    for q, (y0, x0) in enumerate([(0, 0), (0, 200), (200, 0), (200, 200)]):
        boxes, names = [], []
        for r in rows:
            x1, y1, x2, y2 = (float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x0 <= (x1 + x2) / 2 < x0 + 200 and y0 <= (y1 + y2) / 2 < y0 + 200:
                boxes.append(np.clip([x1 - x0, y1 - y0, x2 - x0, y2 - y0], 0, 200))
                names.append(r["label"])
        items.append((f"soap_q{q}", image[y0:y0 + 200, x0:x0 + 200].copy(),
                      np.array(boxes, np.float32).reshape(-1, 4), names))
    return items


def write_coco(folder: str, items: List[Item], category_ids=None, name="instances.json") -> str:
    """Category ids default to non-contiguous ones (Alive 3, Dead 17)."""
    category_ids = category_ids or {"Alive": 3, "Dead": 17}
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    doc = {"images": [], "annotations": [],
           "categories": [{"id": i, "name": c} for c, i in category_ids.items()]}
    for k, (stem, image, boxes, names) in enumerate(items):
        Image.fromarray(image).save(os.path.join(folder, "images", stem + ".png"))
        doc["images"].append({"id": 100 + k, "file_name": f"images/{stem}.png",
                              "width": image.shape[1], "height": image.shape[0]})
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), names):
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": 100 + k,
                                       "category_id": category_ids[c], "iscrowd": 0,
                                       "bbox": [x1, y1, x2 - x1, y2 - y1]})
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def write_voc(folder: str, items: List[Item]) -> str:
    for sub in ("Annotations", "JPEGImages"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for stem, image, boxes, names in items:
        Image.fromarray(image).save(os.path.join(folder, "JPEGImages", stem + ".png"))
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = stem + ".png"
        for box, c in zip(boxes.tolist(), names):
            o = ET.SubElement(root, "object")
            ET.SubElement(o, "name").text = c
            ET.SubElement(o, "difficult").text = "0"
            bb = ET.SubElement(o, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bb, tag).text = f"{v:g}"
        ET.ElementTree(root).write(os.path.join(folder, "Annotations", stem + ".xml"))
    return folder


def write_yolo(folder: str, items: List[Item]) -> str:
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for stem, image, boxes, names in items:
        Image.fromarray(image).save(os.path.join(folder, "images", stem + ".png"))
        h, w = image.shape[:2]
        with open(os.path.join(folder, "labels", stem + ".txt"), "w") as f:
            for (x1, y1, x2, y2), c in zip(boxes.tolist(), names):
                f.write(f"{CLASSES.index(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                        f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n")
    with open(os.path.join(folder, "data.yaml"), "w") as f:
        f.write("names:\n" + "".join(f"  {k}: {c}\n" for k, c in enumerate(CLASSES)))
    return folder


def write_csv(folder: str, items: List[Item]) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "boxes.csv")
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        for stem, image, boxes, names in items:
            Image.fromarray(image).save(os.path.join(folder, stem + ".png"))
            for box, c in zip(boxes.tolist(), names):
                out.writerow([stem + ".png", *(f"{v:g}" for v in box), c])
    return path


WRITERS = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo, "csv": write_csv}
