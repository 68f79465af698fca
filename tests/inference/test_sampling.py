"""Composed sampling locations of the stacked deformable layers (paper Fig. 5)."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.detector.zoo import build_model
from model.inference.sampling import render_sampling_points
from model.ops.layers import DeformConv2d
from model.runtimes.loading import eager_detector

ARCH = {"builder": "dcn_mobilenet_v2_fpn", "num_classes": 2, "min_size": 320, "max_size": 320}


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return eager_detector(build_model(ARCH, pretrained_backbone=False), {"architecture": ARCH})


def test_zero_offsets_give_the_regular_grid(detector):
    image = np.zeros((320, 320, 3), np.uint8)
    layers = detector.sampling_points(image, x=144.0, y=144.0)
    assert [len(l["points"]) for l in layers] == [9, 81, 729]
    # Hand-computed: (144, 144) maps to output cell (4, 4) of the 10x10 stride-32 map; three
    # 3x3 layers (padding 1) reach cells 3..5, 2..6, 1..7, i.e. pixel centres 32*c + 15.5.
    for depth, layer in enumerate(layers, start=1):
        cells = np.unique(layer["points"][:, 0])
        np.testing.assert_allclose(cells, 32 * np.arange(4 - depth, 5 + depth) + 15.5)
        np.testing.assert_allclose(layer["weights"], 1.0)  # modulation 2*sigmoid(0) = 1


def test_learned_offsets_and_masks_move_and_weight_the_points(detector):
    top = [m for m in detector.runtime.model.modules() if isinstance(m, DeformConv2d)][-1]
    with torch.no_grad():
        top.offset_conv.bias[0:18:2] = 1.0   # dy = +1 cell for every kernel point
        top.offset_conv.bias[1:18:2] = -0.5  # dx = -0.5 cell
        top.offset_conv.bias[18:] = 20.0     # mask -> 2 * sigmoid(20) = 2
    try:
        layers = detector.sampling_points(np.zeros((320, 320, 3), np.uint8), 144.0, 144.0)
        ys = np.unique(layers[0]["points"][:, 1])
        xs = np.unique(layers[0]["points"][:, 0])
        np.testing.assert_allclose(ys, 32 * np.array([4, 5, 6]) + 15.5)
        np.testing.assert_allclose(xs, 32 * np.array([2.5, 3.5, 4.5]) + 15.5)
        np.testing.assert_allclose(layers[0]["weights"], 2.0, rtol=1e-6)
    finally:
        with torch.no_grad():
            top.offset_conv.bias.zero_()


def test_render_is_a_png_of_the_image_size(detector):
    image = np.full((320, 300, 3), 90, np.uint8)
    layers = detector.sampling_points(image, 100.0, 100.0)
    png = render_sampling_points(image, layers, 100.0, 100.0)
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (300, 320)
    assert np.asarray(picture).std() > 0  # something was drawn
