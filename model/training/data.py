"""Training data: DeepForest's NEON aerial images with Pascal-VOC tree-crown boxes (PyPI package
`deepforest`, installed --no-deps by `make setup`; read from its data folder, never imported).

Splits: train on 2019_YELL_2_528000_4978000_image_crop2 and OSBS_029, validate on SOAP_061.
2019_YELL_2_541000_4977000_image_crop is held out: nothing here ever reads it.
"""
import importlib.util
import os
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageFilter

TRAIN_IMAGES = ("2019_YELL_2_528000_4978000_image_crop2", "OSBS_029")
VAL_IMAGES = ("SOAP_061",)
HELD_OUT_IMAGES = ("2019_YELL_2_541000_4977000_image_crop",)
CLASSES = ("tree",)  # every crown (alive or dead) is one class; label 1 (0 is background)


def deepforest_data_dir() -> str:
    spec = importlib.util.find_spec("deepforest")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `deepforest` package (data only) is not installed; "
                                "run `make setup`")
    return os.path.join(spec.submodule_search_locations[0], "data")


def read_voc_boxes(xml_path: str) -> np.ndarray:
    """Boxes [K, 4] (x1, y1, x2, y2, pixels) of a Pascal-VOC annotation file."""
    root = ET.parse(xml_path).getroot()
    boxes = [[float(o.find("bndbox").find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")]
             for o in root.iter("object")]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def read_csv_boxes(csv_path: str, image_name: str) -> np.ndarray:
    """Boxes [K, 4] of one image in a DeepForest CSV (image_path, xmin, ymin, xmax, ymax, label);
    the image is matched by name without extension (rows may name the .tif of a .png)."""
    import csv

    stem = os.path.splitext(os.path.basename(image_name))[0]
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if os.path.splitext(os.path.basename(r["image_path"]))[0] == stem]
    return np.asarray([[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in rows],
                      dtype=np.float32).reshape(-1, 4)


@dataclass
class AnnotatedImage:
    name: str
    image: np.ndarray  # [H, W, 3] uint8
    boxes: np.ndarray  # [K, 4] float32


def load_split(names: Sequence[str], data_dir: str = "") -> List[AnnotatedImage]:
    for held_out in HELD_OUT_IMAGES:
        if held_out in names:
            raise ValueError(f"{held_out} is held out: never train, tune or select on it")
    data_dir = data_dir or deepforest_data_dir()
    out = []
    for name in names:
        image = np.asarray(Image.open(os.path.join(data_dir, name + ".png")).convert("RGB"))
        boxes = read_voc_boxes(os.path.join(data_dir, name + ".xml"))
        out.append(AnnotatedImage(name, image, boxes))
    return out


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float in [0, 1]."""
    return torch.tensor(np.asarray(image)).permute(2, 0, 1).float().div_(255)


class RandomTreeCrops(torch.utils.data.IterableDataset):
    """Endless random crops of the training images, sampled by area: a square window of
    crop / s px (s drawn from `scale`, so crowns appear smaller or larger than in the source)
    resized to crop x crop, one of the 8 flips/right-angle rotations (aerial views have no up), and
    colour jitter (brightness, contrast, saturation down to grey, per-channel gain: dead grey snags
    and green crowns both occur) and, with probability blur[0], a Gaussian blur of sigma drawn from
    [0, blur[1]] px (sites differ in optical sharpness: SOAP_061 has half the pixel-to-pixel
    contrast of the training images). Boxes keep only crowns whose centre falls in the window
    (clipped to it). Yields (image [3, crop, crop] float in [0, 1], target dict)."""

    def __init__(self, images: List[AnnotatedImage], crop: int = 400, seed: int = 0,
                 scale: Tuple[float, float] = (1.0, 1.0),
                 blur: Tuple[float, float] = (0.0, 0.0)) -> None:
        if not 0.0 <= blur[0] <= 1.0 or blur[1] < 0.0:
            raise ValueError(f"blur must be (probability in [0, 1], max sigma >= 0), got {blur}")
        self.images, self.crop, self.seed, self.scale, self.blur = images, crop, seed, scale, blur
        self.weights = [a.image.shape[0] * a.image.shape[1] for a in images]

    def sample(self, rng: random.Random) -> Tuple[torch.Tensor, dict]:
        item = rng.choices(self.images, weights=self.weights)[0]
        h, w = item.image.shape[:2]
        window = int(round(self.crop / rng.uniform(*self.scale)))
        ch, cw = min(window, h), min(window, w)
        y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
        crop = item.image[y0:y0 + ch, x0:x0 + cw]
        boxes = item.boxes - np.array([x0, y0, x0, y0], np.float32)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        boxes = np.clip(boxes[(cx >= 0) & (cx < cw) & (cy >= 0) & (cy < ch)], 0, [cw, ch, cw, ch])
        if window != self.crop:
            f = self.crop / window
            th, tw = max(1, int(round(ch * f))), max(1, int(round(cw * f)))
            crop = np.asarray(Image.fromarray(crop).resize((tw, th), Image.BILINEAR))
            boxes = boxes * np.array([tw / cw, th / ch, tw / cw, th / ch], np.float32)
            ch, cw = th, tw
        if self.blur[0] > 0 and rng.random() < self.blur[0]:
            sigma = rng.uniform(0.0, self.blur[1])
            crop = np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(sigma)))
        crop = crop.astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
            boxes = np.stack([cw - boxes[:, 2], boxes[:, 1], cw - boxes[:, 0], boxes[:, 3]], 1)
        if rng.random() < 0.5:
            crop = crop[::-1]
            boxes = np.stack([boxes[:, 0], ch - boxes[:, 3], boxes[:, 2], ch - boxes[:, 1]], 1)
        if rng.random() < 0.5:  # transpose: with the flips, all 8 right-angle symmetries
            crop = crop.transpose(1, 0, 2)
            boxes = boxes[:, [1, 0, 3, 2]]
        gray = crop.mean(2, keepdims=True)
        crop = gray + (crop - gray) * rng.uniform(0.0, 1.3)  # saturation, down to grey
        crop = crop * np.array([rng.uniform(0.9, 1.1) for _ in range(3)], np.float32)
        contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(-25, 25)
        crop = np.clip((crop - crop.mean()) * contrast + crop.mean() + brightness, 0, 255)
        keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
        boxes = boxes[keep].reshape(-1, 4)
        target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
                  "labels": torch.ones(len(boxes), dtype=torch.int64)}
        return image_tensor(np.ascontiguousarray(crop.astype(np.uint8))), target

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed + (info.id if info else 0))
        while True:
            yield self.sample(rng)
