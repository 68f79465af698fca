"""Data reading, checkpoints, tiled prediction and evaluation of the detector pipeline."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from model.detector import checkpoint
from model.detector.zoo import build_model
from model.inference.tiling import tile_origins
from model.runtimes.loading import eager_detector
from model.training import data, release
from model.training.datasets import DetectionDataset, Report, Sample, open_dataset
from model.training.evaluate import average_precision

SMALL = {"builder": "dcn_mobilenet_v2_fpn", "num_classes": 2, "min_size": 128, "max_size": 128}


def test_annotation_counts_of_the_splits():
    counts = {a.name: len(a.boxes) for a in data.load_split(data.TRAIN_IMAGES + data.VAL_IMAGES)}
    assert counts == {"2019_YELL_2_528000_4978000_image_crop2": 574, "OSBS_029": 61,
                      "SOAP_061": 37}


def test_csv_and_voc_readers_agree():
    voc = open_dataset("deepforest:", ids=["OSBS_029"]).samples[0].boxes
    csv = open_dataset("deepforest:OSBS_029.csv").samples[0].boxes
    np.testing.assert_array_equal(np.sort(voc, axis=0), np.sort(csv, axis=0))


def one_image(image: np.ndarray, boxes, labels=None) -> DetectionDataset:
    """A dataset of one in-memory image (its crops read it from the cache)."""
    labels = np.ones(len(boxes), np.int64) if labels is None else labels
    sample = Sample.of("one", "<memory>", boxes, labels, width=image.shape[1],
                       height=image.shape[0])
    return DetectionDataset("memory", "test", ["a", "b"], [sample], Report("memory", "test"))


def crops_of(name, **kwargs):
    dataset = open_dataset("deepforest:", ids=[name])
    cache = {0: data.read_image(dataset.samples[0].path)}
    return data.RandomCrops(dataset, cache=cache, **kwargs)


def test_random_crops_keep_boxes_inside():
    crops = crops_of("OSBS_029", crop=200, seed=3)
    for k in range(10):
        image, target = crops[k]
        assert image.shape == (3, 200, 200) and 0 <= image.min() and image.max() <= 1
        b = target["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 200).all() and (b[:, 2] > b[:, 0]).all()
        assert (target["labels"] == 1).all()


def test_crop_k_is_the_same_crop_whenever_it_is_drawn():
    crops = crops_of("OSBS_029", crop=160, seed=3)
    first = [crops[k] for k in (5, 2, 9)]
    again = [crops[k] for k in (9, 5, 2)]
    for (a, ta), (b, tb) in zip(first, [again[1], again[2], again[0]]):
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])


def test_random_crop_geometry_moves_boxes_and_labels_with_pixels():
    # A bright square of class 2 and a grey one of class 1 on a dark field: after any
    # scale/flip/rotation each box must still frame the pixels of its class.
    image = np.full((600, 600, 3), 40, np.uint8)
    image[250:330, 300:360] = 220
    image[100:150, 80:140] = 90
    dataset = one_image(image, [[300, 250, 360, 330], [80, 100, 140, 150]], np.array([2, 1]))
    crops = data.RandomCrops(dataset, crop=200, seed=1, scale=(0.4, 1.5), cache={0: image})
    seen = 0
    for k in range(60):
        img, target = crops[k]
        assert img.shape[1] <= 200 and img.shape[2] <= 200
        for (x1, y1, x2, y2), label in zip(target["boxes"].round().int().tolist(),
                                           target["labels"].tolist()):
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue  # clipped at the window edge
            # jitter scales differences from the background by 0.63-1.43: 180 vs 50 grey levels
            contrast = float(img[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean() - img.median())
            assert contrast > 0.1 and (contrast > 0.36) == (label == 2), (contrast, label)
            seen += 1
    assert seen >= 10


def test_ignore_regions_are_not_trained_on():
    image = np.full((300, 300, 3), 40, np.uint8)
    dataset = one_image(image, [[10, 10, 60, 60], [100, 100, 200, 200]])
    dataset.samples[0].ignore[1] = True
    crops = data.RandomCrops(dataset, crop=300, seed=0, cache={0: image})
    assert all(len(crops[k][1]["boxes"]) <= 1 for k in range(10))


def _sharpness(crops, n=8) -> float:
    """Mean absolute difference of horizontally and vertically adjacent pixels over n crops."""
    total = 0.0
    for _ in range(n):
        img = next(crops)[0]
        total += float((img[:, :, 1:] - img[:, :, :-1]).abs().mean()
                       + (img[:, 1:] - img[:, :-1]).abs().mean())
    return total / n


def test_blur_augmentation_softens_crops_and_checks_its_arguments():
    sharp = _sharpness(iter(crops_of("OSBS_029", crop=160, seed=5)))
    soft = _sharpness(iter(crops_of("OSBS_029", crop=160, seed=5, blur=(1.0, 3.0))))
    assert soft < 0.7 * sharp
    for bad in [(1.5, 1.0), (-0.1, 1.0), (0.5, -1.0)]:
        with pytest.raises(ValueError, match="blur"):
            crops_of("OSBS_029", blur=bad)


def test_tile_origins_cover_the_image():
    assert tile_origins(300, 400, 0.25) == [0]
    starts = tile_origins(1249, 400, 0.25)
    assert starts[0] == 0 and starts[-1] == 849
    assert all(b - a <= 300 for a, b in zip(starts, starts[1:]))


class OneBoxPerTile(nn.Module):
    """Detects one box at the same place in every tile (to check shifting and merging)."""

    transform = nn.Identity()

    def forward(self, images):
        return [{"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1])} for _ in images]


def test_tiled_prediction_returns_original_pixel_coordinates():
    detector = eager_detector(OneBoxPerTile(), {"tile": {"size": 400, "overlap": 0.25, "nms_iou": 0.4}})
    (small,), = [detector.predict([np.zeros((300, 200, 3), np.uint8)])]
    np.testing.assert_allclose(small["boxes"], [[10, 20, 50, 60]])
    (big,) = detector.predict([np.zeros((1035, 1249, 3), np.uint8)], max_detections=1000)
    origins = {(x, y) for y in tile_origins(1035, 400, 0.25) for x in tile_origins(1249, 400, 0.25)}
    expected = {(x + 10.0, y + 20.0) for x, y in origins}
    assert {(b[0], b[1]) for b in big["boxes"].tolist()} == expected
    (top,) = detector.predict([np.zeros((1035, 1249, 3), np.uint8)], max_detections=3)
    assert len(top["boxes"]) == 3


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    model = build_model(SMALL, pretrained_backbone=False)
    stem = str(tmp_path / "ckpt")
    checkpoint.save(model, {"architecture": SMALL, "tile": {"size": 128}}, stem, half=True)
    config = checkpoint.load_config(stem)
    assert config["architecture"] == SMALL
    loaded = checkpoint.load_weights(build_model(SMALL, pretrained_backbone=False), stem)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().to(v.dtype))

    with open(stem + ".safetensors", "r+b") as f:  # corrupt the header
        f.write(b"\xff" * 16)
    with pytest.raises(checkpoint.CheckpointError, match="not a valid safetensors"):
        checkpoint.load_weights(build_model(SMALL, pretrained_backbone=False), stem)
    with open(stem + ".json", "w") as f:
        f.write("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="not valid JSON"):
        checkpoint.load_config(stem)
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load_config(str(tmp_path / "missing"))


def test_ship_applies_settings_and_records_the_copy_s_validation_ap(tmp_path):
    from model.runtimes.loading import load_detector

    torch.manual_seed(0)
    source, shipped = str(tmp_path / "run"), str(tmp_path / "shipped")
    config = {"architecture": SMALL, "tile": {"size": 128}, "metrics": {}, "classes": ["tree"],
              "training": {"validation": ["SOAP_061"]}}  # as the first checkpoints recorded it
    checkpoint.save(build_model(SMALL, pretrained_backbone=False), config, source)
    release.ship(source, shipped, tta=2, settings={"box_nms_thresh": 0.25})
    config = checkpoint.load_config(shipped)
    assert config["architecture"]["box_nms_thresh"] == 0.25
    assert config["training"]["shipped_settings"] == {"box_nms_thresh": 0.25}
    for key in ("validation", "validation_tta2"):
        assert 0 <= config["metrics"][key]["AP50"] <= 1
        assert set(config["metrics"][key]["per_class"]) == {"tree"}
    assert load_detector(shipped).runtime.model.roi_heads.nms_thresh == 0.25
    with pytest.raises(checkpoint.CheckpointError, match="does not fit"):  # not a setting
        release.ship(source, str(tmp_path / "bad"), settings={"deformable": False})


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    stem = str(tmp_path / "plain")
    plain = {**SMALL, "deformable": False}
    checkpoint.save(build_model(plain, pretrained_backbone=False), {"architecture": plain}, stem)
    with pytest.raises(checkpoint.CheckpointError, match="does not fit"):
        checkpoint.load_weights(build_model(SMALL, pretrained_backbone=False), stem)
    with open(stem + ".json", "w") as f:
        json.dump({"format": checkpoint.FORMAT, "architecture": {"builder": "nope"}}, f)
    with pytest.raises(checkpoint.CheckpointError, match="unknown detector builder"):
        build_model(checkpoint.load_config(stem)["architecture"])


def test_average_precision_of_perfect_and_empty_predictions():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 40, 45]], np.float32)]
    perfect = [{"boxes": gt[0], "scores": np.array([0.9, 0.8])}]
    assert average_precision(perfect, gt)["AP50"] == pytest.approx(1.0)
    shifted = [{"boxes": gt[0] + 100, "scores": np.array([0.9, 0.8])}]
    assert average_precision(shifted, gt)["AP50"] == pytest.approx(0.0)
    assert average_precision([{"boxes": np.zeros((0, 4)), "scores": np.zeros(0)}], gt)["AP50"] == 0


def test_average_precision_per_class():
    gt = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 45]], np.float32),
           "labels": np.array([1, 2])}]
    swapped = [{"boxes": gt[0]["boxes"], "scores": np.array([0.9, 0.8]), "labels": np.array([1, 1])}]
    result = average_precision(swapped, gt, ["cat", "dog", "owl"])
    assert result["per_class"]["cat"] == pytest.approx(1.0)
    assert result["per_class"]["dog"] == pytest.approx(0.0)
    assert result["per_class"]["owl"] is None  # no ground truth: not measured
    assert result["AP50"] == pytest.approx(0.5)


def test_roi_offset_fc_learns_at_its_own_rate():
    from model.training.train import DEFAULTS, param_groups

    model = build_model(dict(SMALL, deformable=True), pretrained_backbone=False)
    groups = param_groups(model, DEFAULTS)
    assert [g["lr_mult"] for g in groups] == [1.0, 0.01]  # the paper's 0.01x for that fc
    fc = model.roi_heads.box_roi_pool.roi_pool.offset_fc
    assert {id(p) for p in groups[1]["params"]} == {id(fc.weight), id(fc.bias)}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    # at 1x (and for the plain ablation, which has no offset fc) one group, as older runs saved
    assert len(param_groups(model, dict(DEFAULTS, offset_fc_lr_mult=1.0))) == 1
    plain = build_model(dict(SMALL, deformable=False), pretrained_backbone=False)
    assert len(param_groups(plain, DEFAULTS)) == 1


def test_fine_tuning_recipe_continues_the_tree_schedule():
    from model.training.train import DEFAULTS, load_recipe, lr_at

    recipes = os.path.join(os.path.dirname(data.__file__), "recipes")
    trees = dict(DEFAULTS, **load_recipe(os.path.join(recipes, "trees.json")))
    cfg = dict(DEFAULTS, **load_recipe(os.path.join(recipes, "trees_finetune.json")))
    assert cfg["data_ids"] == trees["data_ids"] and cfg["val_ids"] == ["SOAP_061"]
    assert trees["blur"][0] == 0 and cfg["blur"][0] > 0  # blur only in the second stage
    first = trees["iterations"]
    assert lr_at(trees, first - 1) == pytest.approx(1e-4)  # stage 1 ends decayed twice
    assert [lr_at(cfg, it) for it in (first, 2400, 2401, cfg["iterations"] - 1)] == \
        pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_box_head_nms_setting_reaches_the_model():
    from model.training.train import DEFAULTS

    arch = dict(DEFAULTS["architecture"], min_size=128, max_size=128)
    assert build_model(arch, pretrained_backbone=False).roi_heads.nms_thresh == 0.3
