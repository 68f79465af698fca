"""A checkpoint trained on other classes is served with its own class names (label and
class_id) on every backend, /offsets included."""
import time

import pytest
import torch
from fastapi.testclient import TestClient
from service_support import encode, photo

from model.detector import checkpoint
from model.detector.zoo import build_model
from service.app import create_app
from service.settings import Settings

CLASSES = ["cat", "dog", "owl"]
ARCH = {"builder": "dcn_mobilenet_v2_fpn", "num_classes": 4, "min_size": 128, "max_size": 128,
        "box_detections_per_img": 20}


@pytest.fixture(scope="module")
def owl_checkpoint(tmp_path_factory):
    """A detector whose box classifier always says "owl" (class 3) with confidence."""
    torch.manual_seed(0)
    model = build_model(ARCH, pretrained_backbone=False)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, -9, -9, 9]))
    stem = str(tmp_path_factory.mktemp("ckpt") / "owls")
    checkpoint.save(model, {"architecture": ARCH, "classes": CLASSES,
                            "tile": {"size": 128, "overlap": 0.25, "nms_iou": 0.4}}, stem)
    return stem


@pytest.mark.parametrize("backend", ["torch", "torchscript", "onnxruntime"])
def test_detections_carry_the_checkpoint_s_class_names(owl_checkpoint, tmp_path, backend):
    app = create_app(Settings(backend=backend, checkpoint=owl_checkpoint,
                              cache_dir=str(tmp_path), request_timeout_s=300))
    with TestClient(app) as client:
        deadline = time.time() + 300
        while client.get("/readyz").status_code != 200:
            assert time.time() < deadline, client.get("/readyz").json()
            time.sleep(0.2)
        r = client.post("/detect", content=encode(photo("chelsea")[:200, :200]),
                        headers={"content-type": "image/png"}, params={"score_threshold": 0.5})
        assert r.status_code == 200, r.text
        detections = r.json()["detections"]
        assert detections and {(d["label"], d["class_id"]) for d in detections} == {("owl", 3)}
        view = client.get(f"/offsets/{r.json()['id']}", params={"format": "json", "x": 50,
                                                                "y": 60})
        assert view.status_code == 200 and view.json()["layers"]
