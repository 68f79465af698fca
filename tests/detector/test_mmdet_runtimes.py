"""An imported mmdetection model on every runtime: TorchScript and ONNX Runtime give eager's
detections and offsets; ONNX Runtime's NumPy preprocessing is eager's, bit for bit."""
import os

import numpy as np
import pytest
import torch
from detection_match import assert_same_detections

from model.detector.mmdet_convert import checkpoint_config
from model.detector.mmdet_faster_rcnn import MMDET_CONFIGS
from model.inference.mmdet_preprocess import preprocess, resize_bilinear_uint8
from model.runtimes.export import export_runtime
from model.runtimes.pytorch import EagerRuntime

HERE = os.path.dirname(os.path.abspath(__file__))


def _detector(name):
    """Random weights with real offsets and masks, and detections above the score threshold."""
    torch.manual_seed(0)
    model = MMDET_CONFIGS[name]().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0 + 0.1 * torch.randn_like(p))
        model.roi_head.bbox_head.fc_cls.weight.mul_(30)
    return model, checkpoint_config(name, [str(i) for i in range(80)])


def _assert_same(eager, other, tile):
    [a], [b] = eager.run([tile]), other.run([tile])
    assert len(a["scores"]) > 0
    assert_same_detections(b, a)
    probes = list(zip(eager.probe(tile), other.probe(tile)))
    assert len(probes) == 26  # offsets and masks of the 13 deformable convs
    for x, y in probes:
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)


def test_numpy_resize_is_bit_exact_with_opencv():
    ref = np.load(os.path.join(HERE, "mmdet_fixtures", "cv2_resize.npz"))
    image = ref["image"].transpose(2, 0, 1)
    for name in ("up", "down"):
        h, w = ref[name].shape[:2]
        out = resize_bilinear_uint8(image, h, w).transpose(1, 2, 0)
        np.testing.assert_array_equal(out, ref[name])


def test_numpy_preprocessing_equals_the_torch_transform():
    model, config = _detector("faster-rcnn_r50_fpn_1x_coco")
    image = np.random.default_rng(1).random((3, 37, 53), dtype=np.float32)
    x, size, box_scale = preprocess(image, config["preprocessing"])
    batch, box_scales = model.transform([torch.from_numpy(image)])
    np.testing.assert_array_equal(x, batch.tensors.numpy())
    np.testing.assert_array_equal(size, batch.image_sizes[0])
    np.testing.assert_array_equal(box_scale, box_scales[0].numpy())


@pytest.mark.parametrize("kind,name", [
    ("torchscript", "faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco"),
    ("onnxruntime", "faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco"),
])
def test_runtime_matches_eager_on_an_imported_model(kind, name, tmp_path):
    from model.runtimes.ort import OnnxRuntimeRuntime
    from model.runtimes.pytorch import TorchScriptRuntime

    model, config = _detector(name)
    directory = export_runtime(model, config, kind, str(tmp_path))
    runtime = (TorchScriptRuntime if kind == "torchscript" else OnnxRuntimeRuntime)(directory)
    assert len(runtime.layers) == 13
    eager = EagerRuntime(model, config)
    rng = np.random.default_rng(0)
    for shape in ((3, 40, 60), (3, 20, 90)):  # not the export's example: sizes are not frozen
        _assert_same(eager, runtime, rng.random(shape, dtype=np.float32))
