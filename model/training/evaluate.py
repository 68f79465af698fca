"""Detection quality: COCO AP, AP50 and AP50 per class (pycocotools) of a detector on an
annotated dataset of any format.

    python -m model.evaluate --checkpoint runs/mine/best --data val.json [--json] \
        [--results detections.json] [--tta 4]

Without --data the checkpoint's own validation split is used. --json prints
{"ap": .., "ap50": .., "per_class": {"<name>": <ap50 or null>, ...}} as the last line.
"""
import argparse
import contextlib
import io
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .datasets import DatasetError, DetectionDataset, open_dataset, read_image, with_classes
from .splits import dataset_from_record


def average_precision(predictions: Sequence[Dict[str, np.ndarray]],
                      targets: Sequence[Dict[str, np.ndarray]],
                      classes: Sequence[str] = ("object",)) -> Dict[str, Any]:
    """{"AP": AP@[.5:.95], "AP50": AP@0.5, "per_class": {name: AP50, or None for a class
    without ground truth}} (pycocotools, up to 1000 detections per image).

    predictions: per image {"boxes" [D, 4] x1y1x2y2, "scores" [D], "labels" [D] (default 1)};
    targets: per image {"boxes" [K, 4], "labels" [K] (default 1), "ignore" [K] bool (crowd /
    difficult: matched to nothing, counted as nothing)}, or just its boxes [K, 4] (one class);
    label k is classes[k - 1].
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for i, (pred, gt) in enumerate(zip(predictions, targets)):
        images.append({"id": i, "width": 1, "height": 1})
        gt = gt if isinstance(gt, dict) else {"boxes": gt}
        boxes = np.asarray(gt["boxes"], float).reshape(-1, 4)
        labels = np.asarray(gt.get("labels", np.ones(len(boxes))), int)
        ignore = np.asarray(gt.get("ignore", np.zeros(len(boxes))), bool)
        for (x1, y1, x2, y2), label, crowd in zip(boxes, labels, ignore):
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": int(crowd)})
        boxes = np.asarray(pred["boxes"], float).reshape(-1, 4)
        labels = np.asarray(pred.get("labels", np.ones(len(boxes))), int)
        for (x1, y1, x2, y2), score, label in zip(boxes, np.asarray(pred["scores"], float),
                                                  labels):
            detections.append({"image_id": i, "category_id": int(label), "score": float(score),
                               "bbox": [x1, y1, x2 - x1, y2 - y1]})
    has_gt = {a["category_id"] for a in annotations if not a["iscrowd"]}
    empty = {c: (0.0 if k + 1 in has_gt else None) for k, c in enumerate(classes)}
    if not detections:
        return {"AP50": 0.0, "AP": 0.0, "per_class": empty}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.params.maxDets = [10, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision [IoU thresholds, recall, class, area range, max dets]; -1 where no ground truth
    precision = ev.eval["precision"][0, :, :, 0, -1]
    per_class = {}
    for k, c in enumerate(classes):
        p = precision[:, k]
        per_class[c] = float(p[p > -1].mean()) if (p > -1).any() else None
    return {"AP50": max(0.0, float(ev.stats[1])), "AP": max(0.0, float(ev.stats[0])),
            "per_class": per_class}


def predict_dataset(detector, dataset: DetectionDataset, tta: int = 1,
                    desc: str = "evaluate") -> List[Dict[str, np.ndarray]]:
    """The detector's detections (score >= 0, up to 1000) on every image, with a progress bar."""
    from tqdm import tqdm

    preds = []
    for s in tqdm(dataset.samples, desc=desc, unit="img", leave=False, dynamic_ncols=True,
                  file=sys.stderr):
        preds += detector.predict([read_image(s.path)], score_threshold=0.0, max_detections=1000,
                                  tta=tta)
    return preds


def evaluate_dataset(detector, dataset: DetectionDataset, tta: int = 1) -> Dict[str, Any]:
    """average_precision of `detector` on `dataset` (whose classes are the detector's)."""
    preds = predict_dataset(detector, dataset, tta)
    targets = [{"boxes": s.boxes, "labels": s.labels, "ignore": s.ignore}
               for s in dataset.samples]
    return {**average_precision(preds, targets, dataset.classes), "predictions": preds}


def coco_results(dataset: DetectionDataset, predictions: Sequence[Dict[str, np.ndarray]]):
    """The predictions as a COCO results list ({"image_id", "category_id", "bbox" [x, y, w, h],
    "score"}) in the dataset's own image and category ids."""
    out = []
    for s, pred in zip(dataset.samples, predictions):
        for (x1, y1, x2, y2), score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(),
                                                  pred["labels"].tolist()):
            out.append({"image_id": s.source_id, "category_id": dataset.category_ids[label - 1],
                        "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                        "score": round(score, 5)})
    return out


def validation_dataset(config: Dict[str, Any]) -> DetectionDataset:
    """The validation split a checkpoint config records (training.validation), in the
    checkpoint's classes."""
    record = config.get("training", {}).get("validation")
    if not record:
        raise DatasetError("the checkpoint records no validation data; pass --data")
    return dataset_from_record(record, config)


def main(argv: Optional[List[str]] = None) -> None:
    from model.detector.checkpoint import CheckpointError, load_config
    from model.runtimes.loading import load_detector

    ap = argparse.ArgumentParser(prog="python -m model.evaluate",
                                 description="COCO AP of a detector checkpoint on a dataset")
    ap.add_argument("--checkpoint", default=None, help="checkpoint stem (default: shipped model)")
    ap.add_argument("--data", help="dataset (COCO .json, VOC, YOLO, CSV; default: the "
                                   "checkpoint's validation split)")
    ap.add_argument("--images", help="folder the dataset's image names are relative to")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    ap.add_argument("--results", help="write the predictions as a COCO results JSON here")
    ap.add_argument("--tta", type=int, default=1, choices=(1, 2, 4, 8),
                    help="test-time augmentation views per tile (model.inference.tta)")
    args = ap.parse_args(argv)
    try:
        detector = load_detector(args.checkpoint)
        classes = detector.config.get("classes") or ["object"]
        if args.data:
            dataset = with_classes(open_dataset(args.data, args.images), classes)
        else:
            dataset = validation_dataset(load_config(args.checkpoint) if args.checkpoint
                                         else detector.config)
    except (DatasetError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    print(f"{dataset.source}: {dataset.summary()}", file=sys.stderr)
    for line in dataset.report.lines():
        print(line, file=sys.stderr)
    result = evaluate_dataset(detector, dataset, args.tta)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(coco_results(dataset, result["predictions"]), f)
        print(f"predictions written to {args.results}", file=sys.stderr)
    summary = {"ap": round(result["AP"], 4), "ap50": round(result["AP50"], 4),
               "per_class": {c: None if v is None else round(v, 4)
                             for c, v in result["per_class"].items()}}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"AP {summary['ap']:.3f}  AP50 {summary['ap50']:.3f}")
        for c, v in summary["per_class"].items():
            print(f"  {c:<20} AP50 {'n/a' if v is None else f'{v:.3f}'}")


if __name__ == "__main__":
    main()
