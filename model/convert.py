"""Import another project's detector checkpoint as a dcnserve checkpoint:

    python -m model.convert mmdet CHECKPOINT.pth --config faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco \
        --out checkpoints/dcn_r50
    DCN_CHECKPOINT=checkpoints/dcn_r50 python -m service

Exits 2 with the list of missing / unexpected / wrongly shaped keys when the checkpoint does not
fit the config.
"""
import argparse
import sys
from typing import List, Optional

from model.detector.mmdet_faster_rcnn import MMDET_CONFIGS


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.convert",
                                 description="import a detector checkpoint")
    sub = ap.add_subparsers(dest="source", required=True)
    mm = sub.add_parser("mmdet", help="an mmdetection Faster R-CNN checkpoint (.pth)")
    mm.add_argument("checkpoint")
    mm.add_argument("--config", required=True, choices=sorted(MMDET_CONFIGS),
                    help="the mmdetection config it was trained with")
    mm.add_argument("--out", required=True, help="checkpoint stem to write")
    args = ap.parse_args(argv)
    from model.detector import checkpoint
    from model.detector.mmdet_convert import MMDetCheckpointError, import_mmdet

    try:
        model, config = import_mmdet(args.checkpoint, args.config)
    except MMDetCheckpointError as e:
        print(f"error: {args.checkpoint}: {e}", file=sys.stderr)
        return 2
    checkpoint.save(model, config, args.out)
    print(f"wrote {checkpoint.paths(args.out)[0]} and .json ({args.config})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
