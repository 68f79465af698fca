"""Composed sampling locations of the stacked deformable layers (paper Fig. 5)."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.detector.zoo import build_model
from model.inference.sampling import TooDeep, compose, render_sampling_points
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


def _zero_probe(layers, input_height, cells):
    """Probe outputs of zero offsets and unit masks for `layers` on maps `cells` high and wide."""
    arrays = []
    for meta, n in zip(layers, cells):
        k = meta["kernel_size"][0] * meta["kernel_size"][1]
        arrays += [np.zeros((1, 2 * k, n, n), np.float32), np.ones((1, k, n, n), np.float32)]
    return arrays


def _layer(name, stride=1):
    return {"layer": name, "kernel_size": [3, 3], "stride": [stride, stride],
            "padding": [1, 1], "dilation": [1, 1]}


def test_a_strided_layer_samples_its_finer_input_map():
    # One 3x3 stride-2 layer whose 10x10 output has stride 32 on a 320-pixel input: (144, 144)
    # is output cell 4, which samples input cells 7..9 of the stride-16 map, centres 16*c + 7.5.
    layers = [_layer("down", stride=2)]
    [top] = compose(layers, _zero_probe(layers, 320, [10]), 320, 1.0, 144.0, 144.0)
    np.testing.assert_allclose(np.unique(top["points"][:, 0]), 16 * np.arange(7, 10) + 7.5)


def test_composition_stops_at_the_point_limit():
    # ResNet-50 with DCN in res3-res5 stacks 13 3x3 layers: 9^13 points would not fit in memory.
    layers = [_layer(f"l{i}") for i in range(13)]
    arrays = _zero_probe(layers, 320, [10] * 13)
    assert [len(l["points"]) for l in compose(layers, arrays, 320, 1.0, 100.0, 100.0)] == \
        [9, 81, 729, 9 ** 4]
    assert len(compose(layers, arrays, 320, 1.0, 100.0, 100.0, depth=2)) == 2
    with pytest.raises(TooDeep, match="more than 6561 points; at most 4 of the 13"):
        compose(layers, arrays, 320, 1.0, 100.0, 100.0, depth=5)
    with pytest.raises(TooDeep, match="the model has 13 deformable layers"):
        compose(layers, arrays, 320, 1.0, 100.0, 100.0, depth=14)
