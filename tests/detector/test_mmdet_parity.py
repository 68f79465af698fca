"""Our import of mmdetection's configs held to mmdetection's own inference, stage by stage
(fixtures from tests/detector/mmdet_fixtures/make_fixtures.py; skipped where not generated).
The seeded weights are regenerated here and imported through the converter's code path."""
import json
import os

import numpy as np
import pytest
import torch
from mmdet_fixtures.seeded_weights import seeded_state

from model.detector.mmdet_convert import import_mmdet
from model.detector.mmdet_faster_rcnn import MMDET_CONFIGS

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmdet_fixtures")
SLICE = (slice(0, 1), slice(0, 4), slice(0, 6), slice(0, 6))


def _fixture(name):
    path = os.path.join(FIXTURES, name + ".npz")
    keys = os.path.join(FIXTURES, "keys.json")
    if not (os.path.exists(path) and os.path.exists(keys)):
        pytest.skip(f"no mmdetection fixture for {name} (run make_fixtures.py)")
    with open(keys) as f:
        return dict(np.load(path)), json.load(f)["keys"][name]


def _close_map(x, ref, prefix, rtol=1e-3):
    x = x.detach()
    np.testing.assert_array_equal(np.array(x.shape), ref[prefix + "_shape"])
    scale = float(ref[prefix + "_stats"][2]) or 1.0
    np.testing.assert_allclose(x[SLICE].numpy(), ref[prefix + "_slice"], atol=rtol * scale)
    stats = np.array([x.mean(), x.std(), x.abs().max(), x.abs().mean()])
    np.testing.assert_allclose(stats, ref[prefix + "_stats"], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name", list(MMDET_CONFIGS))
def test_import_reproduces_mmdetection(name, tmp_path):
    ref, keys = _fixture(name)
    path = tmp_path / "seeded.pth"
    torch.save({"state_dict": seeded_state(keys)}, path)
    model, _ = import_mmdet(str(path), name)
    photos = dict(np.load(os.path.join(FIXTURES, "photos.npz")))
    for photo, rgb in photos.items():
        p = photo + "_"
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            batch, factors = model.transform([image])
            _close_map(batch.tensors, ref, p + "input", 1e-6)
            body = model.backbone.body(batch.tensors)
            for i, x in enumerate(body.values()):
                _close_map(x, ref, f"{p}backbone{i}")
            levels = list(model.backbone.fpn(body).values())
            for i, x in enumerate(levels):
                _close_map(x, ref, f"{p}fpn{i}")
            size = batch.image_sizes[0]
            proposals = model.rpn_head(levels, torch.tensor(size, dtype=torch.float32))
            np.testing.assert_allclose(proposals.numpy(), ref[p + "proposals"], atol=1e-2)
            if p + "boxes" not in ref:  # dpool: mmcv has no CPU DeformRoIPool
                continue
            [out] = model([image])
        np.testing.assert_array_equal(out["labels"].numpy() - 1, ref[p + "labels"])
        np.testing.assert_allclose(out["scores"].numpy(), ref[p + "scores"], atol=1e-3)
        np.testing.assert_allclose(out["boxes"].numpy(), ref[p + "boxes"], atol=0.5)
