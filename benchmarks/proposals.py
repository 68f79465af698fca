"""How many test-time proposals the shipped detector needs: AP@0.5 on the validation image
(SOAP_061) and time per tile for RPN proposal counts and score floors (what chose the shipped
`rpn_post_nms_top_n_test` / `rpn_score_thresh` / `box_score_thresh`).

    python benchmarks/proposals.py [--rounds 3]

Each row: the setting, AP@0.5 and AP of the eager detector on SOAP_061 (score_threshold 0,
1000 detections, as model.evaluate), proposals that reached the box head, and ms per 400x400
tile (best of --rounds, settings alternating).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from timing import compare  # noqa: E402

from model.detector.zoo import load_model  # noqa: E402
from model.runtimes.loading import eager_detector  # noqa: E402
from model.training import data  # noqa: E402
from model.training.evaluate import average_precision  # noqa: E402

# (post-NMS proposals, pre-NMS per level, RPN objectness floor, box score floor)
SETTINGS = [(1000, 1000, 0.0, 0.05), (500, 500, 0.0, 0.05), (300, 1000, 0.0, 0.05),
            (300, 300, 0.0, 0.05), (200, 1000, 0.0, 0.05), (200, 500, 0.0, 0.05),
            (150, 500, 0.0, 0.05), (100, 500, 0.0, 0.05), (300, 1000, 0.05, 0.05),
            (300, 1000, 0.1, 0.05), (200, 1000, 0.05, 0.05), (300, 1000, 0.0, 0.1)]


def configure(model, post: int, pre: int, rpn_floor: float, box_floor: float) -> None:
    model.rpn._post_nms_top_n["testing"] = post
    model.rpn._pre_nms_top_n["testing"] = pre
    model.rpn.score_thresh = rpn_floor
    model.roi_heads.score_thresh = box_floor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    model, config = load_model()
    arch = config["architecture"]
    shipped = (arch.get("rpn_post_nms_top_n_test", 1000), arch.get("rpn_pre_nms_top_n_test", 1000),
               arch.get("rpn_score_thresh", 0.0), arch.get("box_score_thresh", 0.05))
    validation = data.load_split(data.VAL_IMAGES)
    images = [a.image for a in validation]
    detector = eager_detector(model, config)
    counts = {}
    hook = model.roi_heads.box_roi_pool.register_forward_hook(
        lambda m, inputs, out: counts.__setitem__("rois", out.shape[0]))
    rows = []
    for setting in SETTINGS:
        configure(model, *setting)
        with torch.no_grad():
            preds = detector.predict(images, score_threshold=0.0, max_detections=1000)
        rows.append((setting, average_precision(preds, [a.boxes for a in validation]),
                     counts["rois"]))
    hook.remove()
    tile = torch.from_numpy(images[0]).permute(2, 0, 1).float().div(255)[:, :400, :400]

    def timed(setting):
        def run():
            configure(model, *setting)
            with torch.no_grad():
                model([tile])
        return run

    times = compare({s: timed(s) for s in SETTINGS}, rounds=args.rounds, warmup=1)
    configure(model, *shipped)
    print(f"SOAP_061, eager, {torch.get_num_threads()} threads; shipped: post {shipped[0]}, "
          f"pre {shipped[1]}, rpn floor {shipped[2]}, box floor {shipped[3]}")
    print("| proposals (post-NMS) | pre-NMS per level | RPN score floor | box score floor | "
          "RoIs pooled | AP@0.5 | AP | ms / tile |")
    print("|---|---|---|---|---|---|---|---|")
    for setting, ap_, rois in rows:
        print(f"| {setting[0]} | {setting[1]} | {setting[2]} | {setting[3]} | {rois} | "
              f"{ap_['AP50']:.3f} | {ap_['AP']:.3f} | {times[setting] * 1e3:.0f} |")


if __name__ == "__main__":
    main()
