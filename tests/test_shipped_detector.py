"""The shipped default detector: loads by default, finds the validation trees, detects large
images at full resolution, and gives the same detections in eager, TorchScript and ONNX Runtime."""
import numpy as np
import pytest
import torch

import onnx_plugins
from model import data
from model.evaluate import average_precision
from model.export import export_onnx, export_torchscript
from model.inference import load_detector


@pytest.fixture(scope="module")
def detector():
    return load_detector()


@pytest.fixture(scope="module")
def validation():
    return data.load_split(data.VAL_IMAGES)


def test_default_checkpoint_reaches_its_recorded_validation_ap(detector, validation):
    preds = detector.predict([a.image for a in validation], score_threshold=0.0,
                             max_detections=1000)
    ap50 = average_precision(preds, [a.boxes for a in validation])["AP50"]
    recorded = detector.config["metrics"]["validation"]["AP50"]
    assert ap50 == pytest.approx(recorded, abs=0.02)
    assert ap50 > 0.1  # a weak but real detector; see the closing note


def test_large_image_is_detected_in_tiles_at_full_resolution(detector):
    (train_image,) = [a for a in data.load_split(data.TRAIN_IMAGES[:1])]
    crop = train_image.image[:1035, :1249]  # the size of a NEON tile crop
    (result,) = detector.predict([crop], score_threshold=0.3, max_detections=1000)
    assert len(result["boxes"]) > 50
    assert (result["boxes"][:, 2] <= 1249).all() and (result["boxes"][:, 3] <= 1035).all()
    assert result["boxes"][:, 0].max() > 900 and result["boxes"][:, 1].max() > 700


def test_eager_torchscript_and_onnxruntime_agree(detector, validation, tmp_path):
    image = data.image_tensor(validation[0].image)
    with torch.no_grad():
        eager = detector.model([image])[0]
    ts_path, onnx_path = str(tmp_path / "d.pt"), str(tmp_path / "d.onnx")
    export_torchscript(detector, ts_path)
    scripted = torch.jit.load(ts_path)
    with torch.no_grad():
        ts = scripted([image])[1][0]
    export_onnx(detector, onnx_path)
    boxes, labels, scores = onnx_plugins.session(onnx_path).run(None, {"image": image.numpy()})
    assert len(eager["boxes"]) > 0
    for other_boxes, other_scores in ((ts["boxes"].numpy(), ts["scores"].numpy()),
                                      (boxes, scores)):
        assert len(other_boxes) == len(eager["boxes"])
        np.testing.assert_allclose(other_boxes, eager["boxes"].numpy(), atol=1.0)
        np.testing.assert_allclose(other_scores, eager["scores"].numpy(), atol=1e-3)
