"""NumPy box arithmetic (model.boxes) against torchvision's box_iou / nms / batched_nms, so the
torch-free tiling and TTA give the same detections as torchvision would."""
import numpy as np
import pytest
import torch
import torchvision

from model.inference import boxes


def random_boxes(rng, n):
    xy = rng.uniform(0, 400, (n, 2)).astype(np.float32)
    wh = rng.uniform(5, 60, (n, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[: n // 5] = 0.5  # ties
    return np.concatenate([xy, xy + wh], 1), scores, rng.integers(1, 3, n)


@pytest.mark.parametrize("seed", range(20))
def test_iou_and_nms_match_torchvision(seed):
    rng = np.random.default_rng(seed)
    b, s, labels = random_boxes(rng, int(rng.integers(1, 400)))
    tb, ts, tl = torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(labels)
    np.testing.assert_allclose(boxes.box_iou(b, b), torchvision.ops.box_iou(tb, tb).numpy(),
                               atol=1e-6)
    for iou in (0.3, 0.5):
        ours = boxes.nms(b, s, iou)
        assert sorted(ours.tolist()) == sorted(torchvision.ops.nms(tb, ts, iou).tolist())
        assert (np.diff(s[ours]) <= 0).all()  # best first
        theirs = torchvision.ops.batched_nms(tb, ts, tl, iou)
        assert sorted(boxes.batched_nms(b, s, labels, iou).tolist()) == sorted(theirs.tolist())


def test_nms_edge_cases():
    empty = np.zeros((0, 4), np.float32)
    assert boxes.batched_nms(empty, np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5).size == 0
    same = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert boxes.nms(same, np.array([0.2, 0.9], np.float32), 0.5).tolist() == [1]
    assert boxes.batched_nms(same, np.array([0.2, 0.9], np.float32), np.array([1, 2]),
                             0.5).tolist() == [1, 0]  # other label: kept
