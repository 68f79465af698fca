"""Training batches: random crops of a DetectionDataset's images (`RandomCrops`) and the loader
that keeps the training step fed (`CropLoader`: worker processes, images decoded once and cached
in memory when they fit). Also the shipped tree model's DeepForest images by name
(`load_split`, `TRAIN_IMAGES`, `VAL_IMAGES`: what recipes/trees.json names), for the
benchmarks and tests of that model.

Crop k of a run is drawn from its own seeded generator (seed, k), so the data order is a pure
function of the iteration: a resumed run sees exactly the batches it would have seen.
"""
import random
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageFilter

from .datasets import DetectionDataset, deepforest_data_dir, open_dataset, read_image

__all__ = ["RandomCrops", "CropLoader", "image_tensor", "deepforest_data_dir", "load_split",
           "TRAIN_IMAGES", "VAL_IMAGES"]

TRAIN_IMAGES = ("2019_YELL_2_528000_4978000_image_crop2", "OSBS_029")
VAL_IMAGES = ("SOAP_061",)


@dataclass
class AnnotatedImage:
    name: str
    image: np.ndarray  # [H, W, 3] uint8
    boxes: np.ndarray  # [K, 4] float32, every class


def load_split(names: Sequence[str]) -> List[AnnotatedImage]:
    """DeepForest's images `names` (file stems in its data folder) with their VOC boxes."""
    dataset = open_dataset("deepforest:", ids=list(names))
    return [AnnotatedImage(s.image_id, read_image(s.path), s.boxes) for s in dataset.samples]

FLIPS = ("none", "horizontal", "dihedral")


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float in [0, 1]."""
    return torch.tensor(np.asarray(image)).permute(2, 0, 1).float().div_(255)


class RandomCrops(torch.utils.data.Dataset):
    """Random training crops: crops[k] is crop number k of the run, (image [3, h, w] float in
    [0, 1], target {"boxes" [K, 4] float32, "labels" [K] int64}), h, w <= crop.

    An image is drawn with weight max(1, its area / crop^2) (each crop-sized window of a large
    image about as often as a small image); a square window of crop / s px (s drawn from
    `scale`) is cut from it (clipped to the image: a small image is used whole) and resized by
    s, so objects appear smaller or larger than in the source; then flips: "horizontal" (photos),
    "dihedral" (the 8 flips and right-angle rotations: aerial views have no up) or "none"; colour
    jitter (saturation down to grey, per-channel gain, contrast, brightness) and, with probability
    blur[0], a Gaussian blur of sigma drawn from [0, blur[1]] px. A box is kept when its centre
    falls in the window (clipped to it); ignore regions (crowd, difficult) are not trained on.
    `cache`: decoded images by sample index (the rest are decoded on use)."""

    def __init__(self, dataset: DetectionDataset, crop: int = 400, seed: int = 0,
                 scale: Tuple[float, float] = (1.0, 1.0), blur: Tuple[float, float] = (0.0, 0.0),
                 flips: str = "dihedral", cache: Optional[Dict[int, np.ndarray]] = None) -> None:
        if not 0.0 <= blur[0] <= 1.0 or blur[1] < 0.0:
            raise ValueError(f"blur must be (probability in [0, 1], max sigma >= 0), got {blur}")
        if flips not in FLIPS:
            raise ValueError(f"flips must be one of {FLIPS}, got {flips!r}")
        self.dataset, self.crop, self.seed, self.scale = dataset, crop, seed, scale
        self.blur, self.flips, self.cache = blur, flips, cache or {}
        self.weights = [max(1.0, s.width * s.height / crop ** 2) for s in dataset.samples]

    def __len__(self) -> int:
        return 1 << 62  # endless: indices come from CropLoader

    def image(self, i: int) -> np.ndarray:
        return self.cache[i] if i in self.cache else read_image(self.dataset.samples[i].path)

    def __getitem__(self, k: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        rng = random.Random(self.seed * 1_000_003 + k)
        i = rng.choices(range(len(self.weights)), weights=self.weights)[0]
        sample, image = self.dataset.samples[i], self.image(i)
        train = ~sample.ignore
        return self.augment(rng, image, sample.boxes[train], sample.labels[train])

    def augment(self, rng: random.Random, image: np.ndarray, boxes: np.ndarray,
                labels: np.ndarray) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        h, w = image.shape[:2]
        window = int(round(self.crop / rng.uniform(*self.scale)))
        ch, cw = min(window, h), min(window, w)
        y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
        crop = image[y0:y0 + ch, x0:x0 + cw]
        boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx >= 0) & (cx < cw) & (cy >= 0) & (cy < ch)
        boxes, labels = np.clip(boxes[inside], 0, [cw, ch, cw, ch]), labels[inside]
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
        if self.flips != "none" and rng.random() < 0.5:
            crop = crop[:, ::-1]
            boxes = np.stack([cw - boxes[:, 2], boxes[:, 1], cw - boxes[:, 0], boxes[:, 3]], 1)
        if self.flips == "dihedral":
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
        target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes[keep].reshape(-1, 4),
                                                                 np.float32)),
                  "labels": torch.from_numpy(np.ascontiguousarray(labels[keep], np.int64))}
        return image_tensor(np.ascontiguousarray(crop.astype(np.uint8))), target


def decoded_cache(dataset: DetectionDataset, budget_bytes: float) -> Dict[int, np.ndarray]:
    """Every image of `dataset` decoded, by sample index, if together they fit in
    `budget_bytes` (else none: each crop decodes its image, in a worker)."""
    total = sum(3 * s.width * s.height for s in dataset.samples)
    if total > budget_bytes:
        return {}
    return {i: read_image(s.path) for i, s in enumerate(dataset.samples)}


def _quiet_worker(_: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle


def _as_list(batch: Sequence[Any]) -> List[Any]:
    return list(batch)


class CropLoader:
    """Batches of `batch_size` crops for iterations [start, stop): iteration t gets crops
    t * batch_size ... (t + 1) * batch_size - 1, made by `workers` processes (0: in this one)
    a few batches ahead."""

    def __init__(self, crops: RandomCrops, batch_size: int, workers: int = 2) -> None:
        self.crops, self.batch_size, self.workers = crops, batch_size, workers

    def batches(self, start: int, stop: int) -> Iterator[List[Tuple[torch.Tensor, dict]]]:
        indices = range(start * self.batch_size, stop * self.batch_size)
        extra = ({"prefetch_factor": 4, "persistent_workers": False,
                  "worker_init_fn": _quiet_worker} if self.workers else {})
        loader = torch.utils.data.DataLoader(
            self.crops, batch_size=self.batch_size, sampler=indices, num_workers=self.workers,
            collate_fn=_as_list, **extra)
        return iter(loader)
