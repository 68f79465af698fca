"""The shipped detector on the GPU: images/s at batch 1, 8 and 32 on 400x400 inputs (CUDA events,
median of --reps batches), eager float32, TorchScript float32 and eager float16 (a half copy of
the model: the dcn ops have no autocast rule yet, so autocast would hand them mixed dtypes; GPU
only); and
how many of the float32 detections float16 keeps (a proxy for its AP, which needs the labelled
validation set: a detection is kept when float16 finds one of its label at IoU >= 0.5).

    python benchmarks/gpu_model.py [--reps 20] [--json figures.json]
    python benchmarks/gpu_model.py --device cpu --quick     # dry run of the script itself
"""
import copy
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gpu_timing import gpu_benchmark_args, median_ms, write_json  # noqa: E402

from model.detector.zoo import load_model  # noqa: E402


def sample_images(count: int, device: str):
    """[3, 400, 400] images: validation photos where the DeepForest data package is installed
    (real trees, so the autocast comparison means something), else uniform noise."""
    try:
        from model.training import data

        split = data.load_split(data.VAL_IMAGES)
        photos = [torch.from_numpy(s.image.copy()).permute(2, 0, 1).float().div(255) for s in split]
        source = "DeepForest validation photos"
    except (ImportError, FileNotFoundError):
        photos, source = [torch.rand(3, 400, 400)], "noise (no DeepForest data package)"
    images = [photos[i % len(photos)][:, :400, :400].contiguous().to(device) for i in range(count)]
    return images, source


def kept_fraction(reference, candidate, min_score: float = 0.3) -> float:
    """Fraction of reference detections (score >= min_score) that candidate matches."""
    kept = total = 0
    for ref, cand in zip(reference, candidate):
        boxes = ref["boxes"][ref["scores"] >= min_score]
        labels = ref["labels"][ref["scores"] >= min_score]
        total += len(boxes)
        if len(boxes) and len(cand["boxes"]):
            iou = torchvision.ops.box_iou(boxes.float(), cand["boxes"].float())
            same = labels[:, None] == cand["labels"][None, :]
            kept += int(((iou >= 0.5) & same).any(1).sum())
    return kept / total if total else 1.0


def half_kept_fraction(model, half_run, sample, source):
    try:
        kept = kept_fraction(model(sample), half_run(sample))
    except RuntimeError as e:
        print(f"the float16 detector failed: {e}")
        return None
    print(f"float16 keeps {100 * kept:.1f}% of the float32 detections (score >= 0.3) on {source}")
    return kept


def images_per_second(fn, inputs, args):
    """Images/s of fn(inputs), or None (saying why) where this mode fails: a figure missing
    from the table must not hide the others."""
    try:
        ms = median_ms(lambda: fn(inputs), args.device, args.reps, min(2, args.warmup))
        return len(inputs) / (ms / 1e3)
    except RuntimeError as e:
        print(f"batch {len(inputs)}: {e}".splitlines()[0])
        return None


def main():
    args = gpu_benchmark_args(__doc__)
    model = load_model()[0].to(args.device)
    scripted = torch.jit.script(model)
    cuda = args.device.startswith("cuda")
    batches = (1,) if args.quick else (1, 8, 32)
    images, source = sample_images(max(batches), args.device)

    half_model = copy.deepcopy(model).half() if cuda else None

    def half_run(batch):
        return half_model([im.half() for im in batch])

    modes = {"eager float32": model, "TorchScript float32": scripted}
    if cuda:  # torchvision's CPU NMS has no float16 / bfloat16 kernel
        modes["eager float16"] = half_run
    rows = []
    print(f"detector images/s on {torch.cuda.get_device_name() if cuda else args.device}, "
          f"400x400, median of {args.reps} batches")
    print("| batch | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    with torch.no_grad():
        for batch in batches:
            inputs = images[:batch]
            ips = {name: images_per_second(fn, inputs, args) for name, fn in modes.items()}
            rows.append({"batch": batch, **ips})
            print(f"| {batch} | " + " | ".join("n/a" if v is None else f"{v:.1f}"
                                               for v in ips.values()) + " |")
        kept = half_kept_fraction(model, half_run, images[:8], source) if cuda else None
    write_json(args.json, {"rows": rows, "half_kept_fraction": kept, "images": source})


if __name__ == "__main__":
    main()
