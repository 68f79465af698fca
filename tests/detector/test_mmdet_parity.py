"""Our import of mmdetection's configs held to mmdetection's own inference, stage by stage
(fixtures from tests/detector/mmdet_fixtures/make_fixtures.py; skipped where not generated).
The seeded weights are regenerated here and imported through the converter's code path.
Each stage's largest absolute difference is printed (pytest -s) for the record."""
import json
import os

import numpy as np
import pytest
import torch
from detection_match import assert_same_detections
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


def _imported(name, tmp_path):
    ref, keys = _fixture(name)
    path = tmp_path / "seeded.pth"
    torch.save({"state_dict": seeded_state(keys)}, path)
    model, config = import_mmdet(str(path), name)
    return ref, model, config


def _photos():
    return dict(np.load(os.path.join(FIXTURES, "photos.npz")))


def _close_map(x, ref, prefix, rtol=1e-3):
    """x against the fixture's slice and statistics of the same map; -> max abs difference."""
    x = x.detach()
    np.testing.assert_array_equal(np.array(x.shape), ref[prefix + "_shape"])
    scale = float(ref[prefix + "_stats"][2]) or 1.0
    np.testing.assert_allclose(x[SLICE].numpy(), ref[prefix + "_slice"], atol=rtol * scale)
    stats = np.array([x.mean(), x.std(), x.abs().max(), x.abs().mean()])
    np.testing.assert_allclose(stats, ref[prefix + "_stats"], rtol=rtol, atol=rtol * scale)
    return float(np.abs(x[SLICE].numpy() - ref[prefix + "_slice"]).max())


def _detections(out, ref, p):
    """out's detections (labels 1-based) against the fixture's; -> max abs differences."""
    ours = {k: np.asarray(out[k]) for k in ("boxes", "scores", "labels")}
    ours["labels"] = ours["labels"] - 1
    theirs = {k: ref[p + k] for k in ("boxes", "scores", "labels")}
    return {"detection " + k: v for k, v in assert_same_detections(ours, theirs).items()}


def _offset_hooks(model, ref, p):
    """Captures our offset predictors' outputs for the layers the fixture recorded."""
    names = [k[len(p + "offset_"):-len("_slice")] for k in ref
             if k.startswith(p + "offset_") and k.endswith("_slice")]
    seen = {}
    modules = dict(model.backbone.body.named_modules())
    hooks = [modules[n.replace("conv_offset", "offset_conv")].register_forward_hook(
        lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in names]
    return seen, hooks


@pytest.mark.parametrize("name", list(MMDET_CONFIGS))
def test_import_reproduces_mmdetection(name, tmp_path):
    ref, model, _ = _imported(name, tmp_path)
    for photo, rgb in _photos().items():
        p = photo + "_"
        diffs = {}
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        seen, hooks = _offset_hooks(model, ref, p)
        with torch.no_grad():
            batch, _ = model.transform([image])
            diffs["input"] = _close_map(batch.tensors, ref, p + "input", 1e-6)
            body = model.backbone.body(batch.tensors)
            for i, x in enumerate(body.values()):
                diffs[f"backbone{i}"] = _close_map(x, ref, f"{p}backbone{i}")
            for n, x in seen.items():
                diffs[n] = _close_map(x, ref, f"{p}offset_{n}")
            levels = list(model.backbone.fpn(body).values())
            for i, x in enumerate(levels):
                diffs[f"fpn{i}"] = _close_map(x, ref, f"{p}fpn{i}")
            size = torch.tensor(batch.image_sizes[0], dtype=torch.float32)
            proposals, scores = model.rpn_head(levels, size)
            none = np.zeros(len(scores))
            rpn = assert_same_detections(
                {"boxes": proposals.numpy(), "scores": scores.numpy(), "labels": none},
                {"boxes": ref[p + "proposals"], "scores": ref[p + "proposal_scores"],
                 "labels": np.zeros(len(ref[p + "proposal_scores"]))},
                box_tol=1e-2, score_tol=1e-4, cap=1000)
            diffs.update({"proposal " + k: v for k, v in rpn.items()})
            if p + "boxes" in ref:  # not dpool: mmcv has no CPU DeformRoIPool
                [out] = model([image])
                diffs.update(_detections(out, ref, p))
        for h in hooks:
            h.remove()
        print(f"\n{name} {photo}: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))


@pytest.mark.parametrize("kind", ["torchscript", "onnxruntime"])
@pytest.mark.parametrize("name", list(MMDET_CONFIGS))
def test_exported_model_reproduces_mmdetection(name, kind, tmp_path):
    """Each config exported: mmdetection's detections (dpool, whose detections mmdetection cannot
    give on a CPU: eager's), and eager's offsets and masks of the 13 deformable convs."""
    from model.runtimes.export import export_runtime
    from model.runtimes.ort import OnnxRuntimeRuntime
    from model.runtimes.pytorch import EagerRuntime, TorchScriptRuntime

    ref, model, config = _imported(name, tmp_path)
    directory = export_runtime(model, config, kind, str(tmp_path / kind))
    runtime = (TorchScriptRuntime if kind == "torchscript" else OnnxRuntimeRuntime)(directory)
    eager = EagerRuntime(model, config)
    for i, (photo, rgb) in enumerate(_photos().items()):
        tile = np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32) / 255
        [out] = runtime.run([tile])
        if photo + "_boxes" in ref:
            diffs = _detections(out, ref, photo + "_")
        else:
            [theirs] = eager.run([tile])
            assert len(theirs["scores"]) > 0
            diffs = assert_same_detections(out, theirs)
        if i == 0:
            probes = list(zip(eager.probe(tile), runtime.probe(tile)))
            assert len(runtime.layers) == (13 if "dconv" in name else 0)
            assert len(probes) == 2 * len(runtime.layers)  # offsets and masks
            for x, y in probes:
                np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-4)
        print(f"\n{name} {kind} {photo}: {diffs}")
