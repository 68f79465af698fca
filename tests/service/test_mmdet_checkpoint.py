"""An mmdetection checkpoint, imported by the converter's command line and served as a user
would serve it (DCN_CHECKPOINT=STEM, the default backend): /detect answers with mmdetection's
own detections of that photo under COCO's class names; /offsets composes the top 4 of its 13
deformable convs (6561 points) and says why not more."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from detection_match import assert_same_detections
from detector.mmdet_fixtures.seeded_weights import seeded_state
from fastapi.testclient import TestClient
from service_support import encode

from model.detector.mmdet_faster_rcnn import COCO_CLASSES
from service.app import create_app
from service.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "detector", "mmdet_fixtures")
CONFIG = "faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The seeded checkpoint in mmdetection's format, through `python -m model.convert`."""
    with open(os.path.join(FIXTURES, "keys.json")) as f:
        keys = json.load(f)["keys"][CONFIG]
    folder = tmp_path_factory.mktemp("mmdet")
    torch.save({"state_dict": seeded_state(keys)}, folder / "dcn_r50.pth")
    stem = str(folder / "dcn_r50")
    done = subprocess.run([sys.executable, "-m", "model.convert", "mmdet", str(folder / "dcn_r50.pth"),
                           "--config", CONFIG, "--out", stem], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return stem


def test_the_service_gives_mmdetections_detections(converted, tmp_path):
    ref = np.load(os.path.join(FIXTURES, CONFIG + ".npz"))
    rgb = np.load(os.path.join(FIXTURES, "photos.npz"))["coffee"]
    app = create_app(Settings(checkpoint=converted, cache_dir=str(tmp_path),
                              request_timeout_s=600))
    with TestClient(app) as client:
        deadline = time.time() + 600
        while client.get("/readyz").status_code != 200:
            assert time.time() < deadline, client.get("/readyz").json()
            time.sleep(0.5)
        r = client.post("/detect", content=encode(rgb), headers={"content-type": "image/png"},
                        params={"score_threshold": 0.05, "max_detections": 100})
        assert r.status_code == 200, r.text
        found = r.json()["detections"]
        assert all(d["label"] == COCO_CLASSES[d["class_id"] - 1] for d in found)
        ours = {"boxes": np.array([d["box"] for d in found], np.float32),
                "scores": np.array([d["score"] for d in found], np.float32),
                "labels": np.array([d["class_id"] - 1 for d in found])}
        theirs = {k: ref["coffee_" + k] for k in ("boxes", "scores", "labels")}
        print("\nserved vs mmdetection:", assert_same_detections(ours, theirs))
        h, w = rgb.shape[:2]
        view = client.get(f"/offsets/{r.json()['id']}",
                          params={"format": "json", "x": w // 2, "y": h // 2})
        assert view.status_code == 200, view.text
        assert [len(layer["points"]) for layer in view.json()["layers"]] == [9, 81, 729, 6561]
        points = np.array(view.json()["layers"][-1]["points"])
        assert ((points > -200) & (points < max(h, w) + 200)).all()  # on the image's scale
        deep = client.get(f"/offsets/{r.json()['id']}", params={"format": "json", "layer": 6})
        assert deep.status_code == 422
        assert "at most 4 of the 13 deformable layers" in deep.json()["detail"]
