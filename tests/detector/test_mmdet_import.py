"""The mmdetection import without mmdetection: preprocessing, anchors, box coding, pooling, key
mapping and the key check, the command line, whole-image inference."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from mmdet_names import mmdet_state

from model.detector.mmdet_convert import MMDetCheckpointError, check_keys, mapped_state
from model.detector.mmdet_faster_rcnn import MMDET_CONFIGS
from model.detector.mmdet_heads import RoIAlignLayer, decode_deltas, level_anchors
from model.detector.mmdet_transform import rescale_size, resize_bilinear_uint8
from model.inference.tiling import TiledDetector

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_resize_is_bit_exact_with_opencv():
    ref = np.load(os.path.join(HERE, "mmdet_fixtures", "cv2_resize.npz"))
    image = torch.from_numpy(ref["image"]).permute(2, 0, 1)
    for name in ("up", "down"):
        h, w = ref[name].shape[:2]
        out = resize_bilinear_uint8(image, h, w).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(out, ref[name])


def test_rescale_size_keeps_ratio_as_mmcv():
    assert rescale_size(512, 773) == (800, 1208)
    assert rescale_size(300, 451) == (800, 1203)
    assert rescale_size(2000, 600) == (1333, 400)


def test_anchors_are_mmdetections_unrounded():
    a = level_anchors(4, 1, 2)
    s = 2 ** 0.5
    expected = torch.tensor([[-16 * s, -8 * s, 16 * s, 8 * s], [-16, -16, 16, 16],
                             [-8 * s, -16 * s, 8 * s, 16 * s]], dtype=torch.float32)
    torch.testing.assert_close(a[:3], expected)
    torch.testing.assert_close(a[3:], expected + torch.tensor([4.0, 0, 4, 0]))


def test_delta_clamp_is_both_sided_and_boxes_clip_to_the_image():
    box = torch.tensor([[10.0, 10.0, 30.0, 50.0]])
    out = decode_deltas(box, torch.tensor([[0.0, 0.0, -10.0, 10.0]]), (1, 1, 1, 1),
                       torch.tensor([100.0, 100.0]))
    w = 20 * 16 / 1000  # dw clamped at log(16/1000); dh at -log(16/1000), then clipped
    torch.testing.assert_close(out, torch.tensor([[20 - w / 2, 0.0, 20 + w / 2, 100.0]]))


def test_roi_align_layer_is_aligned_adaptive_roi_align():
    x = torch.randn(1, 3, 20, 24)
    rois = torch.tensor([[0, 3.3, 4.1, 40.2, 60.7], [0, 0.0, 0.0, 9.0, 5.0]])
    ours = RoIAlignLayer(7, 0.5)(x, rois)
    ref = torchvision.ops.roi_align(x, rois, 7, 0.5, 0, aligned=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def dconv_model():
    return MMDET_CONFIGS["faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco"]()


@pytest.mark.parametrize("legacy", [False, True])
def test_mmdet_keys_map_onto_ours(dconv_model, legacy):
    state = mapped_state(mmdet_state(dconv_model, legacy=legacy))
    check_keys(dconv_model, state, "dconv")
    ours = dconv_model.state_dict()
    assert set(state) == set(ours)
    for key in ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_reg.bias"):
        torch.testing.assert_close(state[key], ours[key], rtol=0, atol=0)


def test_a_plain_checkpoint_is_refused_for_the_dconv_config_with_the_key_list(dconv_model):
    plain = MMDET_CONFIGS["faster-rcnn_r50_fpn_1x_coco"]()
    with pytest.raises(MMDetCheckpointError) as e:
        check_keys(dconv_model, mapped_state(mmdet_state(plain)), "dconv")
    message = str(e.value)
    assert "missing (26)" in message and "backbone.body.layer2.0.conv2.offset_conv.weight" in message


def test_group4_offsets_are_wrongly_shaped_for_the_mdconv_config():
    mdconv = MMDET_CONFIGS["faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco"]()
    group4 = MMDET_CONFIGS["faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco"]()
    with pytest.raises(MMDetCheckpointError, match=r"wrong shape \(26\)"):
        check_keys(mdconv, mapped_state(mmdet_state(group4)), "mdconv")


def test_cli_reports_a_misfit_without_traceback(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": {"rpn_head.rpn_conv.weight": torch.zeros(256, 256, 3, 3)}}, path)
    run = subprocess.run([sys.executable, "-m", "model.convert", "mmdet", str(path), "--config",
                          "faster-rcnn_r50_fpn_1x_coco", "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2
    assert "missing" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.json").exists()


class _WholeImageRuntime:
    kind, device, layers = "fake", "cpu", []
    config = {"tile": {"whole_image": True, "size": 1333}}

    def __init__(self):
        self.seen = []

    def run(self, tiles):
        self.seen.extend(t.shape for t in tiles)
        return [{"boxes": np.array([[1, 2, 3, 4]], np.float32), "scores": np.array([0.9], np.float32),
                 "labels": np.array([1])} for _ in tiles]


def test_whole_image_models_get_one_tile_per_view():
    runtime = _WholeImageRuntime()
    detector = TiledDetector(runtime)
    assert detector.count_tiles(1500, 2500) == 1 and detector.count_tiles(1500, 2500, tta=2) == 2
    [out] = detector.predict([np.zeros((1500, 2500, 3), np.uint8)], score_threshold=0.5)
    assert runtime.seen == [(3, 1500, 2500)]
    np.testing.assert_array_equal(out["boxes"], [[1, 2, 3, 4]])
