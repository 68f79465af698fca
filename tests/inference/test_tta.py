"""Test-time augmentation: view geometry, box fusion, and tiled prediction through the views."""
import numpy as np
import pytest
import torch
from torch import nn

from model.inference import tta
from model.runtimes.loading import eager_detector


@pytest.mark.parametrize("view", range(8))
def test_boxes_found_in_a_view_map_back_to_the_tile(view):
    tile = np.zeros((3, 30, 50), np.float32)  # non-square: transposing views swap the sides
    tile[:, 4:10, 7:19] = 1.0  # rows 4-9, columns 7-18: box (7, 4, 19, 10)
    seen = tta.transform(tile, view)
    assert seen.shape[1:] == ((50, 30) if view & 4 else (30, 50)) and seen.flags.c_contiguous
    ys, xs = np.nonzero(seen[0])
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    np.testing.assert_array_equal(tta.invert_boxes(found, view, 30, 50), [[7.0, 4.0, 19.0, 10.0]])


def test_views_are_distinct_and_counts_checked():
    tile = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    seen = {tuple(tta.transform(tile, v).flatten().tolist()) for v in tta.views(8)}
    assert len(seen) == 8
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        tta.views(3)


def test_fusion_averages_agreeing_views_and_discounts_lone_boxes():
    boxes = np.array([[10.0, 10, 30, 30], [12, 10, 32, 30],  # the same crown in 2 views
                      [100, 100, 120, 120],                  # seen in one view only
                      [11, 12, 31, 32]], np.float32)         # overlapping, other class
    scores = np.array([0.8, 0.8, 0.8, 0.5], np.float32)
    labels = np.array([1, 1, 1, 2])
    fused, fused_scores, fused_labels = tta.fuse(boxes, scores, labels, n_views=2, iou=0.4)
    assert fused.shape == (3, 4) and sorted(fused_labels.tolist()) == [1, 1, 2]
    by_box = {tuple(round(v, 4) for v in b): (s, l)
              for b, s, l in zip(fused.tolist(), fused_scores.tolist(), fused_labels.tolist())}
    assert by_box[(11.0, 10.0, 31.0, 30.0)][1] == 1  # mean of the two views, class 1 only
    assert by_box[(11.0, 10.0, 31.0, 30.0)][0] == pytest.approx(0.8)  # found in every view
    assert by_box[(100.0, 100.0, 120.0, 120.0)][0] == pytest.approx(1 - 0.2 ** 0.5)  # < 0.8
    assert by_box[(11.0, 10.0, 31.0, 30.0)][0] > by_box[(100.0, 100.0, 120.0, 120.0)][0]
    assert all(0 <= s < 1 for s in fused_scores.tolist())
    empty = tta.fuse(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                     np.zeros(0, np.int64), 4, 0.4)
    assert empty[0].shape == (0, 4)


class BrightBlobDetector(nn.Module):
    """Detects the bounding box of the bright pixels of each tile (a model that sees geometry)."""

    transform = nn.Identity()

    def forward(self, images):
        out = []
        for im in images:
            ys, xs = torch.nonzero(im[0] > 0.5, as_tuple=True)
            box = (torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]).float()
                   if len(xs) else torch.zeros(0, 4))
            out.append({"boxes": box, "scores": torch.full((len(box),), 0.9),
                        "labels": torch.ones(len(box), dtype=torch.long)})
        return out


@pytest.mark.parametrize("views", [1, 2, 4, 8])
def test_augmented_tiled_prediction_finds_the_object_where_it_is(views):
    image = np.zeros((700, 1000, 3), np.uint8)  # several non-square edge tiles
    image[130:170, 520:600] = 255  # box (520, 130, 600, 170), inside several tiles whole
    detector = eager_detector(BrightBlobDetector(), {"tile": {"size": 400, "overlap": 0.5}})
    (result,) = detector.predict([image], score_threshold=0.5, tta=views)
    assert len(result["boxes"]) == 1  # tiles and views merged into one crown
    np.testing.assert_allclose(result["boxes"][0], [520, 130, 600, 170])
    assert result["scores"][0] == pytest.approx(0.9)
