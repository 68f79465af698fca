"""The checks every dataset passes before training: images that exist and decode, boxes that are
finite, of positive size and inside their image, unique image ids, and enough left to learn
from. Each finding is counted in the dataset's Report; what cannot be trained is a DatasetError."""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image, ImageOps

from .record import DatasetError, DetectionDataset, Report, Sample


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(width, height) of the image at `path` after EXIF orientation, decoding it fully (a
    truncated file fails here, not in a data-loader worker); None if missing or unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im).size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def check_boxes(sample: Sample, report: Report) -> None:
    """Drops non-finite and zero-size boxes, clips the rest to the image (dropping those left
    without area: wholly outside it)."""
    b = sample.boxes
    finite = np.isfinite(b).all(1)
    positive = finite & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    if (~finite).any():
        report.note("non-finite boxes (dropped)", sample.image_id, int((~finite).sum()))
    if (finite & ~positive).any():
        report.note("boxes of zero or negative size (dropped)", sample.image_id,
                    int((finite & ~positive).sum()))
    sample.keep(positive)
    w, h = sample.width, sample.height
    clipped = np.clip(sample.boxes, 0, [w, h, w, h]).astype(np.float32)
    moved = (clipped != sample.boxes).any(1)
    inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if (moved & inside).any():
        report.note("boxes extending outside their image (clipped to it)", sample.image_id,
                    int((moved & inside).sum()))
    if (~inside).any():
        report.note("boxes wholly outside their image (dropped)", sample.image_id,
                    int((~inside).sum()))
    sample.boxes = clipped
    sample.keep(inside)


def checked(source: str, format: str, classes: List[str], samples: List[Sample],
            report: Report, **kwargs) -> DetectionDataset:
    """The DetectionDataset of a reader's output after the checks (DatasetError when no
    image is usable)."""
    unique, seen = [], set()
    for s in samples:
        if s.image_id in seen:
            report.note("images with a duplicate id (first kept)", s.image_id)
        else:
            seen.add(s.image_id)
            unique.append(s)
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        sizes = list(pool.map(lambda s: image_size(s.path), unique))
    usable = []
    for s, size in zip(unique, sizes):
        if size is None:
            finding = ("image files missing (skipped)" if not os.path.exists(s.path)
                       else "image files unreadable (skipped)")
            report.note(finding, s.path)
            continue
        if s.width and s.height and (s.width, s.height) != size:
            report.note("images whose annotated size differs from the file (file size used)",
                        s.image_id)
        s.width, s.height = size
        check_boxes(s, report)
        usable.append(s)
    negatives = sum(1 for s in usable if not len(s.boxes))
    if negatives:
        report.note("images without boxes (kept as negatives)", n=negatives)
    if not usable:
        report.errors.append(f"no usable images (of {len(samples)} listed)")
        raise DatasetError(f"{source}: no usable images (of {len(samples)} listed):\n"
                           + "\n".join(report.lines()))
    return DetectionDataset(source, format, classes, usable, report, **kwargs)


def check_trainable(train: DetectionDataset, val: DetectionDataset) -> List[str]:
    """Errors that leave nothing sensible to train: an empty split, no boxes, a class without
    training boxes. Returns warnings (a class without validation boxes) when it can train."""
    errors, warnings = [], []
    for name, split in (("training", train), ("validation", val)):
        if not len(split):
            errors.append(f"the {name} split is empty")
    counts = train.box_counts()
    if len(train) and not sum(counts):
        errors.append("the training split has no boxes at all")
    elif len(train):
        for c, n in zip(train.classes, counts):
            if not n:
                errors.append(f"class {c!r} has no boxes in the training split: the detector "
                              "cannot learn it (remove the class or annotate some)")
    if len(val) and sum(counts):
        for c, n in zip(val.classes, val.box_counts()):
            if not n:
                warnings.append(f"class {c!r} has no boxes in the validation split: its AP "
                                "is not measured")
    if errors:
        raise DatasetError("nothing sensible to train:\n" + "\n".join(f"  {e}" for e in errors))
    return warnings
