"""The one record type every dataset reader produces, and the report of what a reader found.

    dataset = open_dataset("data/instances_train.json")       # any format, see the package
    image, target = dataset[0]   # [H, W, 3] uint8, {"boxes" [K, 4], "labels" [K], "ignore" [K]}
    dataset.classes              # ["cat", "dog"]: label k is classes[k - 1] (0 is background)
"""
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image


class DatasetError(ValueError):
    """A dataset from which nothing sensible can be trained or evaluated (the message says
    why and what was found)."""


@dataclass
class Sample:
    """One annotated image. boxes [K, 4] float32 x1 y1 x2 y2 in pixels; labels [K] int64 in
    1..len(classes); ignore [K] bool: COCO `iscrowd` / VOC `difficult` boxes, never trained on
    and neither hits nor misses in evaluation. source_id: the image id in the source file."""
    image_id: str
    path: str
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    source_id: Any = None
    width: int = 0
    height: int = 0

    @staticmethod
    def of(image_id: str, path: str, boxes: Sequence, labels: Sequence,
           ignore: Optional[Sequence] = None, **kwargs) -> "Sample":
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(labels, np.int64).reshape(-1)
        ignore = (np.zeros(len(labels), bool) if ignore is None
                  else np.asarray(ignore, bool).reshape(-1))
        return Sample(image_id, path, boxes, labels, ignore, **kwargs)

    def keep(self, mask: np.ndarray) -> None:
        self.boxes, self.labels = self.boxes[mask], self.labels[mask]
        self.ignore = self.ignore[mask]


@dataclass
class Report:
    """What reading a dataset found and did: `counts` of each finding (e.g. "boxes clipped to
    the image"), `errors` that leave nothing to train on."""
    source: str
    format: str
    counts: Counter = field(default_factory=Counter)
    examples: Dict[str, List[str]] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)

    def note(self, finding: str, example: str = "", n: int = 1) -> None:
        self.counts[finding] += n
        if example and len(self.examples.setdefault(finding, [])) < 3:
            self.examples[finding].append(example)

    def lines(self) -> List[str]:
        out = []
        for finding, n in self.counts.items():
            shown = self.examples.get(finding)
            out.append(f"  {n} {finding}" + (f" (e.g. {', '.join(shown)})" if shown else ""))
        return out + [f"  error: {e}" for e in self.errors]


class DetectionDataset:
    """Images with boxes, torchvision CocoDetection-style: `dataset[i]` is (image [H, W, 3]
    uint8, target {"boxes" [K, 4] float32 x1y1x2y2 px, "labels" [K] int64 (1-based), "ignore"
    [K] bool, "image_id" str}). `classes` names the labels; `category_ids[k - 1]` is label k's
    id in the source file (COCO category id, YOLO class index, or k)."""

    def __init__(self, source: str, format: str, classes: Sequence[str], samples: List[Sample],
                 report: Report, category_ids: Optional[Sequence[Any]] = None,
                 images_dir: Optional[str] = None) -> None:
        self.source, self.format, self.classes = source, format, list(classes)
        self.samples, self.report, self.images_dir = samples, report, images_dir
        self.category_ids = list(category_ids or range(1, len(self.classes) + 1))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, Dict[str, Any]]:
        s = self.samples[i]
        return read_image(s.path), {"boxes": s.boxes, "labels": s.labels, "ignore": s.ignore,
                                    "image_id": s.image_id}

    def subset(self, ids: Sequence[str], source: Optional[str] = None) -> "DetectionDataset":
        """The samples whose image_id is in `ids`, in that order (DatasetError for unknown ones)."""
        by_id = {s.image_id: s for s in self.samples}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise DatasetError(f"{self.source}: no image with id {unknown[:3]}")
        return DetectionDataset(source or self.source, self.format, self.classes,
                                [by_id[i] for i in ids], self.report, self.category_ids,
                                self.images_dir)

    def split(self, fraction: float, seed: int = 0) -> Tuple["DetectionDataset",
                                                               "DetectionDataset"]:
        """(train, validation): a seeded random `fraction` of the images (at least one) held out."""
        if not 0 < fraction < 1:
            raise DatasetError(f"the validation fraction must be in (0, 1), got {fraction}")
        ids = sorted(s.image_id for s in self.samples)
        if len(ids) < 2:
            raise DatasetError(f"{self.source} has {len(ids)} usable image(s): too few to hold "
                               "some out for validation; pass --val with a validation set")
        random.Random(seed).shuffle(ids)
        n_val = max(1, int(round(fraction * len(ids))))
        held = set(ids[:n_val])
        return (self.subset([s.image_id for s in self.samples if s.image_id not in held]),
                self.subset([s.image_id for s in self.samples if s.image_id in held]))

    def box_counts(self) -> List[int]:
        """Boxes (not ignored) per class, in class order."""
        labels = np.concatenate([s.labels[~s.ignore] for s in self.samples] or [np.zeros(0)])
        return [int((labels == k).sum()) for k in range(1, len(self.classes) + 1)]

    def summary(self) -> str:
        counts = ", ".join(f"{c} {n}" for c, n in zip(self.classes, self.box_counts()))
        negatives = sum(1 for s in self.samples if not len(s.boxes))
        return (f"{len(self)} images ({negatives} without boxes), {len(self.classes)} classes: "
                f"{counts}")


def read_image(path: str) -> np.ndarray:
    """The image file at `path` as [H, W, 3] uint8 RGB (EXIF orientation applied)."""
    from PIL import ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
