"""DeepForest-style CSV: one row per box, columns image_path, xmin, ymin, xmax, ymax, label
(pixels). image_path is relative to `images_dir` (default: the CSV's folder). A row with empty or
all-zero coordinates marks an image without boxes (DeepForest's convention). Classes: every
label, sorted."""
import csv
import os
from typing import Dict, List, Optional, Tuple

from .record import DatasetError, Report, Sample

COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def read_csv_boxes(path: str, images_dir: Optional[str] = None) -> Tuple[List[str],
                                                                          List[Sample], Report]:
    """(classes, samples, report) of the CSV file at `path`."""
    report = Report(path, "csv")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: not a readable CSV file: {e}") from None
    missing = [c for c in COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise DatasetError(f"{path}: a box CSV needs columns {', '.join(COLUMNS)}; "
                           f"missing {', '.join(missing)}")
    root = images_dir or os.path.dirname(os.path.abspath(path))
    per_image: Dict[str, list] = {}
    for line, r in enumerate(rows, start=2):
        boxes = per_image.setdefault(r["image_path"], [])
        values = [r[k] for k in COLUMNS[1:5]]
        try:
            box = [float(v) if v not in ("", None) else 0.0 for v in values]
        except ValueError:
            report.note("rows with non-numeric coordinates (dropped)", f"line {line}")
            continue
        if any(box):
            boxes.append((box, str(r["label"])))
    classes = sorted({label for boxes in per_image.values() for _, label in boxes})
    label_of = {c: k + 1 for k, c in enumerate(classes)}
    samples = [Sample.of(os.path.splitext(name)[0], os.path.join(root, name),
                         [b for b, _ in boxes], [label_of[c] for _, c in boxes], source_id=name)
               for name, boxes in per_image.items()]
    return classes, samples, report
