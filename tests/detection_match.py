"""Detections compared as sets: the same label, box within `box_tol` pixels and score within
`score_tol` for each, one to one. Near-equal scores may come out in either order, and at a
per-image cap (mmdetection's 100) a near-tie may keep either of two boxes, so detections
within `score_tol` of the lowest kept score need no partner when the list is full."""
import numpy as np


def assert_same_detections(ours, ref, box_tol=0.5, score_tol=1e-3, cap=100):
    """ours, ref: {"boxes" [D, 4], "scores" [D], "labels" [D]} (NumPy). -> the largest box and
    score differences between partners, and how many near-cap detections had none."""
    assert len(ours["scores"]) == len(ref["scores"]), (len(ours["scores"]), len(ref["scores"]))
    floor = -np.inf
    if len(ref["scores"]) >= cap:
        floor = float(min(ref["scores"].min(), ours["scores"].min())) + score_tol
    worst = {"boxes": 0.0, "scores": 0.0, "unpartnered": 0}
    for a, b, what in ((ours, ref, "ours"), (ref, ours, "reference")):
        free = np.ones(len(b["scores"]), bool)
        for i in np.argsort(-a["scores"], kind="stable"):
            fits = (free & (b["labels"] == a["labels"][i])
                    & (np.abs(b["scores"] - a["scores"][i]) <= score_tol)
                    & (np.abs(b["boxes"] - a["boxes"][i]).max(1) <= box_tol))
            if fits.any():
                j = np.argmax(fits)
                free[j] = False
                box = float(np.abs(b["boxes"][j] - a["boxes"][i]).max())
                worst["boxes"] = max(worst["boxes"], box)
                worst["scores"] = max(worst["scores"], float(abs(b["scores"][j] - a["scores"][i])))
            elif a["scores"][i] > floor:
                raise AssertionError(
                    f"{what} detection {i} (label {a['labels'][i]}, score {a['scores'][i]:.4f}, "
                    f"box {a['boxes'][i]}) has no partner")
            else:
                worst["unpartnered"] += 1
    return worst
