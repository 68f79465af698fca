"""Detection quality: COCO-style AP (pycocotools) of predictions against ground-truth boxes.

    python -m model.evaluate [--checkpoint STEM] [--images SOAP_061 ...] [--tta 4]
"""
import argparse
import contextlib
import io
import json
from typing import Dict, List, Sequence

import numpy as np


def average_precision(predictions: Sequence[Dict[str, np.ndarray]],
                      ground_truth: Sequence[np.ndarray]) -> Dict[str, float]:
    """AP@0.5 and AP@[.5:.95] (pycocotools, single class, up to 1000 detections per image).

    predictions: per image {"boxes": [D, 4] x1y1x2y2, "scores": [D]}; ground_truth: per image
    [K, 4] boxes.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for i, (pred, gt) in enumerate(zip(predictions, ground_truth)):
        images.append({"id": i, "width": 1, "height": 1})
        for box in np.asarray(gt, dtype=float).reshape(-1, 4):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
        for box, score in zip(np.asarray(pred["boxes"], float).reshape(-1, 4),
                              np.asarray(pred["scores"], float)):
            x1, y1, x2, y2 = box
            detections.append({"image_id": i, "category_id": 1, "score": float(score),
                               "bbox": [x1, y1, x2 - x1, y2 - y1]})
    if not detections:
        return {"AP50": 0.0, "AP": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": 1, "name": "tree"}]}
        gt.createIndex()
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [10, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"AP50": float(ev.stats[1]), "AP": float(ev.stats[0])}


def main(argv: List[str] = None) -> None:
    from model.runtimes.loading import load_detector

    from . import data

    ap = argparse.ArgumentParser(prog="python -m model.evaluate",
                                 description="AP of a detector checkpoint on annotated images")
    ap.add_argument("--checkpoint", default=None, help="checkpoint stem (default: shipped model)")
    ap.add_argument("--images", nargs="+", default=list(data.VAL_IMAGES))
    ap.add_argument("--tta", type=int, default=1, choices=(1, 2, 4, 8),
                    help="test-time augmentation views per tile (model.inference.tta)")
    args = ap.parse_args(argv)
    detector = load_detector(args.checkpoint)
    split = data.load_split(args.images)
    preds = detector.predict([a.image for a in split], score_threshold=0.0, max_detections=1000,
                               tta=args.tta)
    print(json.dumps(average_precision(preds, [a.boxes for a in split]), indent=2))


if __name__ == "__main__":
    main()
