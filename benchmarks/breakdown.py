"""Where the detector's time goes: backbone, FPN, RPN, RoI pooling, box head, post-processing
(box decoding + NMS), pre-processing, and the tiled detector's own tiling and merging, for one
400x400 tile and for the 1249x1035 aerial crop, in eager PyTorch and in ONNX Runtime; with the
detector's useful FLOP/s (convolutions, deformable convolutions, linear layers) as a fraction of
this machine's measured float32 GEMM rate.

    python benchmarks/breakdown.py [--rounds 3] [--threads 2]

Eager stages are timed with forward hooks on the detector's submodules; ONNX Runtime stages
from its profiler's per-node times, grouped by the module path the exporter writes into each
node's name. Tiling/merging is TiledDetector.plan + merge (NumPy) around the model runs.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.detector.zoo import load_model  # noqa: E402
from model.runtimes.loading import eager_detector  # noqa: E402
from model.training import data  # noqa: E402

# (stage, eager submodule path, ONNX node-name prefix), in pipeline order. The RoI head's pooler
# (model.detector.MultiScaleDeformRoIPool) also runs the offset fc and the box head's fc6; those
# two are reported on their own and subtracted from "RoI pooling".
STAGES = [("pre-processing", "transform", "/transform/"),
          ("backbone", "backbone.body", "/backbone/body/"),
          ("FPN", "backbone.fpn", "/backbone/fpn/"),
          ("RPN", "rpn", "/rpn/"),
          ("RoI offset fc", "roi_heads.box_roi_pool.roi_pool.offset_fc",
           "/roi_heads/box_roi_pool/roi_pool/offset_fc/"),
          ("box head fc6 (per level, in the pooler)", "roi_heads.box_roi_pool.fc6",
           "/roi_heads/box_roi_pool/fc6/"),
          ("RoI pooling (rigid + deformable)", "roi_heads.box_roi_pool",
           "/roi_heads/box_roi_pool/"),
          ("box head fc7", "roi_heads.box_head", "/roi_heads/box_head/"),
          ("box predictor", "roi_heads.box_predictor", "/roi_heads/box_predictor/")]
POOL, NESTED = "RoI pooling (rigid + deformable)", ("RoI offset fc",
                                                    "box head fc6 (per level, in the pooler)")
HEADS = (POOL, "box head fc7", "box predictor")
POST = "post-processing (decode, NMS)"
BATCH = 8  # tiles per eager forward, as TiledDetector.predict


def gemm_rate(threads: int) -> float:
    """Best float32 FLOP/s of a 1024^3 matrix product on `threads` threads."""
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * 1024 ** 3 / best


def useful_flops(model, tile) -> float:
    """Multiply-adds x 2 of the convolutions, deformable convolutions and linear layers of one
    forward pass (torch's FLOP counter, plus the dcn convolutions it does not know)."""
    from torch.utils.flop_counter import FlopCounterMode

    extra = []

    def count(module, inputs, output):
        n, cout, h, w = output.shape
        kh, kw = module.kernel_size
        extra.append(2 * n * cout * h * w * module.in_channels // module.groups * kh * kw)

    from model.ops.layers import DeformConv2d
    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, DeformConv2d)]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model([tile])
    for h in hooks:
        h.remove()
    return counter.get_total_flops() + sum(extra)


def eager_stages(model, images, rounds):
    """Best-of-rounds seconds per stage of model(images) in batches of BATCH (hooks), and the
    total."""
    spans = defaultdict(float)
    starts = {}
    hooks = []
    for name, path, _ in STAGES:
        module = model.get_submodule(path)
        hooks.append(module.register_forward_pre_hook(
            lambda m, i, name=name: starts.__setitem__(name, time.perf_counter())))
        hooks.append(module.register_forward_hook(
            lambda m, i, o, name=name: spans.__setitem__(
                name, spans[name] + time.perf_counter() - starts[name])))
    best, best_total = None, float("inf")
    with torch.no_grad():
        model(images[:BATCH])  # warm-up
        for _ in range(rounds):
            spans.clear()
            t = time.perf_counter()
            for s in range(0, len(images), BATCH):
                model(images[s:s + BATCH])
            total = time.perf_counter() - t
            if total < best_total:
                best_total, best = total, dict(spans)
    for h in hooks:
        h.remove()
    best[POOL] -= sum(best[k] for k in NESTED)
    outside = sum(v for k, v in best.items() if k not in HEADS and k not in NESTED)
    heads = sum(best[k] for k in HEADS + NESTED)
    best[POST] = best_total - outside - heads
    return best, best_total


def ort_stages(session_path, tiles, rounds, threads):
    """Seconds per stage of ONNX Runtime runs over `tiles` (its profiler's node times of the
    fastest pass) and the total wall time of that pass."""
    import onnxruntime as ort

    import onnx_plugins

    best, best_total = None, float("inf")
    for _ in range(rounds):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        with tempfile.TemporaryDirectory() as tmp:
            options.profile_file_prefix = os.path.join(tmp, "ort")
            session = onnx_plugins.session(session_path, ["CPUExecutionProvider"], options)
            session.run(None, {"image": tiles[0]})  # warm-up (its events are dropped below)
            t = time.perf_counter()
            for tile in tiles:
                session.run(None, {"image": tile})
            total = time.perf_counter() - t
            events = json.load(open(session.end_profiling()))
        runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
        after = runs[1] if len(runs) > 1 else 0
        spans = defaultdict(float)
        for e in events:
            if (e.get("cat") != "Node" or not e["name"].endswith("_kernel_time")
                    or e["ts"] < after):
                continue
            node = e["name"][:-len("_kernel_time")]
            stage = next((s for s, _, prefix in STAGES if node.startswith(prefix)), POST)
            spans[stage] += e["dur"] * 1e-6
        if total < best_total:
            best_total, best = total, dict(spans)
    return best, best_total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, config = load_model()
    detector = eager_detector(model, config)
    (train,) = data.load_split(data.TRAIN_IMAGES[:1])
    crop = train.image[:1035, :1249]
    tile = np.ascontiguousarray(crop[:400, :400])
    plan = detector.plan([crop])
    tile_chw = torch.from_numpy(detector.plan([tile]).tiles[0])

    from model.runtimes.export import export_onnx
    tmp = tempfile.mkdtemp()
    onnx_path = os.path.join(tmp, "detector.onnx")
    export_onnx(model, onnx_path, detector.tile_size)

    rows = {}
    for what, tiles in (("tile", [tile_chw]), (f"image ({len(plan.tiles)} tiles)",
                                              [torch.from_numpy(t) for t in plan.tiles])):
        e, e_total = eager_stages(model, tiles, args.rounds)
        o, o_total = ort_stages(onnx_path, [t.numpy() for t in tiles], args.rounds, args.threads)
        rows[what] = (e, e_total, o, o_total)
    # tiling and merging of the full image, around precomputed model outputs
    outputs = detector.runtime.run(plan.tiles)
    t_plan = min(_timed(lambda: detector.plan([crop])) for _ in range(args.rounds))
    t_merge = min(_timed(lambda: detector.merge(plan, outputs, 0.3, 1000))
                  for _ in range(args.rounds))

    flops = useful_flops(model, tile_chw)
    rate = gemm_rate(args.threads)
    print(f"profile, CPU, {args.threads} threads; ms (share of the total)")
    names = [s for s, _, _ in STAGES] + [POST]
    print("| stage | " + " | ".join(f"{w} eager | {w} ORT" for w in rows) + " |")
    print("|---|" + "---|" * (2 * len(rows)))
    for name in names:
        cells = []
        for e, e_total, o, o_total in rows.values():
            cells += [f"{e.get(name, 0) * 1e3:.1f} ({e.get(name, 0) / e_total:.0%})",
                      f"{o.get(name, 0) * 1e3:.1f} ({o.get(name, 0) / o_total:.0%})"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    image_key = list(rows)[1]
    e_total, o_total = rows[image_key][1], rows[image_key][3]
    print(f"| tiling (plan) | - | - | {t_plan * 1e3:.1f} ({t_plan / e_total:.0%}) | "
          f"{t_plan * 1e3:.1f} ({t_plan / o_total:.0%}) |")
    print(f"| merging (NMS across tiles) | - | - | {t_merge * 1e3:.1f} ({t_merge / e_total:.0%}) | "
          f"{t_merge * 1e3:.1f} ({t_merge / o_total:.0%}) |")
    totals = []
    for _, e_total, _, o_total in rows.values():
        totals += [f"{e_total * 1e3:.0f}", f"{o_total * 1e3:.0f}"]
    print("| total (model runs) | " + " | ".join(totals) + " |")
    tile_eager, tile_ort = rows["tile"][1], rows["tile"][3]
    print(f"\nuseful work per tile {flops / 1e9:.2f} GFLOP; measured GEMM rate "
          f"{rate / 1e9:.1f} GFLOP/s; detector eager {flops / tile_eager / 1e9:.1f} GFLOP/s "
          f"({flops / tile_eager / rate:.0%} of GEMM), ONNX Runtime "
          f"{flops / tile_ort / 1e9:.1f} GFLOP/s ({flops / tile_ort / rate:.0%})")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
