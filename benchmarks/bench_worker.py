"""One code tree's side of benchmarks/before_after.py: loads that tree's detector (its service
default backend, plus any other kinds asked for) and times what the driver asks, one JSON command
per stdin line, one JSON answer per stdout line. Uses only APIs both trees have.

    python benchmarks/bench_worker.py TREE CACHE_DIR KIND [KIND ...]   # KIND: default, torch, ...
"""
import json
import os
import sys
import time

TREE, CACHE = sys.argv[1], sys.argv[2]
sys.path.insert(0, TREE)

import numpy as np  # noqa: E402

from model.runtimes.loading import load_runtime  # noqa: E402
from model.training import data  # noqa: E402
from model.training.evaluate import average_precision  # noqa: E402
from service.settings import Settings  # noqa: E402

DEFAULT = Settings.model_fields["backend"].default  # what `make serve` runs in this tree
DETECTORS = {}
for kind in sys.argv[3:]:
    DETECTORS[kind] = load_runtime(DEFAULT if kind == "default" else kind, cache_dir=CACHE)
(TRAIN,) = data.load_split(data.TRAIN_IMAGES[:1])
CROP = np.ascontiguousarray(TRAIN.image[:1035, :1249])  # the 1249 x 1035 aerial crop
TILE = np.ascontiguousarray(CROP[:400, :400])  # a dense 400 x 400 tile of it
VALIDATION = data.load_split(data.VAL_IMAGES)
TORCHVISION = None


def torchvision_model():
    """torchvision's Faster R-CNN MobileNetV3-Large-FPN, random weights, its defaults, at the
    tile's size (min_size = max_size = 400)."""
    global TORCHVISION
    if TORCHVISION is None:
        import torch
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

        torch.manual_seed(0)
        TORCHVISION = fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, min_size=400, max_size=400).eval()
    return TORCHVISION


def run(cmd):
    what = cmd["cmd"]
    if what == "default_backend":
        return DEFAULT
    if what == "tile":  # B copies of the tile through the tiled detector, 8 tiles per run
        detector = DETECTORS[cmd["kind"]]
        start = time.perf_counter()
        detector.predict([TILE] * cmd["batch"], score_threshold=0.3, max_detections=300,
                         batch_size=8)
        return time.perf_counter() - start
    if what == "image":
        detector = DETECTORS[cmd["kind"]]
        start = time.perf_counter()
        detector.predict([CROP], score_threshold=0.3, max_detections=1000, batch_size=8)
        return time.perf_counter() - start
    if what == "torchvision":
        import torch

        model = torchvision_model()
        images = [torch.from_numpy(TILE).permute(2, 0, 1).float().div(255)] * cmd["batch"]
        with torch.no_grad():
            start = time.perf_counter()
            for s in range(0, len(images), 8):
                model(images[s:s + 8])
            return time.perf_counter() - start
    if what == "ap":
        detector = DETECTORS[cmd["kind"]]
        preds = detector.predict([a.image for a in VALIDATION], score_threshold=0.0,
                                 max_detections=1000)
        return average_precision(preds, [a.boxes for a in VALIDATION])["AP50"]
    raise ValueError(f"unknown command {what!r}")


print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    print(json.dumps({"result": run(json.loads(line))}), flush=True)
