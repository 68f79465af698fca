"""The same mmdetection checkpoint served by us (eager, TorchScript, ONNX Runtime) and by
mmdetection's own CPU inference (`inference_detector`), on the same photo, 2 threads each: images/s
and the ratios ours (best runtime) / mmdetection on the DCN model, our DCN / our plain model.

    python benchmarks/mmdet.py [--mmdet-python /work/mmref/venv/bin/python] [--rounds 5]

mmdetection runs in its own environment (mmdetection 3.x, mmcv 2.x with CPU ops; never one of
ours): this script starts itself there as a worker (--mmdet-python, or $MMDET_PYTHON), which builds
the configs, writes the seeded checkpoints (tests/detector/mmdet_fixtures/seeded_weights.py) that
we then import with model.convert's code, and times one inference per request. Candidates are
timed round-robin in single runs, best of --rounds (benchmarks/timing.py's rule), and the timed
call is the whole image -> detections path on each side (preprocessing included). Not part of
`make bench`: it needs that second environment. `--ours-only` skips mmdetection (the seeded
checkpoints are then written from the fixtures' key list) and times our runtimes alone, for the
dconv / plain ratio.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "detector", "mmdet_fixtures")
CONFIGS = {"plain": ("faster_rcnn", "faster-rcnn_r50_fpn_1x_coco"),
           "dconv": ("dcn", "faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco")}
THREADS = 2
REPLY = "mmdet-worker: "


def worker(image_path: str, directory: str) -> None:
    """In mmdetection's environment: builds each config with seeded weights, then answers
    "<config key>" lines on stdin with the seconds of one inference_detector call."""
    # this file is benchmarks/mmdet.py: its folder on sys.path would shadow the mmdet package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    import mmdet
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config
    from mmengine.runner import save_checkpoint

    sys.path.insert(0, FIXTURES)
    from seeded_weights import seeded_state

    torch.set_num_threads(THREADS)
    bgr = np.ascontiguousarray(np.load(image_path)[..., ::-1])
    models = {}
    for key, (folder, name) in CONFIGS.items():
        cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs",
                                           folder, name + ".py"))
        cfg.model.backbone.init_cfg = None
        empty = init_detector(cfg, None, device="cpu")
        keys = [(k, list(v.shape)) for k, v in empty.state_dict().items()]
        path = os.path.join(directory, name + ".pth")
        save_checkpoint({"state_dict": seeded_state(keys)}, path)
        models[key] = init_detector(cfg, path, device="cpu")
    print(REPLY + json.dumps({"ready": True, "mmdet": mmdet.__version__,
                      "mmcv": __import__("mmcv").__version__}), flush=True)
    for line in sys.stdin:
        key = line.strip()
        start = time.perf_counter()
        with torch.no_grad():
            result = inference_detector(models[key], bgr)
        seconds = time.perf_counter() - start
        print(REPLY + json.dumps({"seconds": seconds, "detections": len(result.pred_instances)}),
              flush=True)


class MMDetWorker:
    def __init__(self, python: str, image_path: str, directory: str) -> None:
        self.proc = subprocess.Popen([python, __file__, "--worker", image_path, directory],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        self.versions = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:  # mmengine prints to stdout too
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError("the mmdetection worker exited (see its stderr above)")

    def seconds(self, key: str) -> float:
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def our_runtimes(directory: str) -> dict:
    """{(config key, runtime): TiledDetector} for our import of the worker's checkpoints."""
    import torch

    from model.detector.mmdet_convert import import_mmdet
    from model.inference.tiling import TiledDetector
    from model.runtimes.export import export_runtime
    from model.runtimes.loading import eager_detector
    from model.runtimes.ort import OnnxRuntimeRuntime
    from model.runtimes.pytorch import TorchScriptRuntime

    torch.set_num_threads(THREADS)
    out = {}
    for key, (_, name) in CONFIGS.items():
        model, config = import_mmdet(os.path.join(directory, name + ".pth"), name)
        out[key, "torch"] = eager_detector(model, config)
        ts = export_runtime(model, config, "torchscript", os.path.join(directory, key + "-ts"))
        out[key, "torchscript"] = TiledDetector(TorchScriptRuntime(ts))
        ort = export_runtime(model, config, "onnxruntime", os.path.join(directory, key + "-ort"))
        out[key, "onnxruntime"] = TiledDetector(OnnxRuntimeRuntime(ort, threads=THREADS))
    return out


def seeded_checkpoints(directory: str) -> None:
    """Without mmdetection: the worker's seeded checkpoints, from the key list of the fixtures."""
    import torch

    sys.path.insert(0, FIXTURES)
    from seeded_weights import seeded_state

    with open(os.path.join(FIXTURES, "keys.json")) as f:
        keys = json.load(f)["keys"]
    for _, name in CONFIGS.values():
        torch.save({"state_dict": seeded_state(keys[name])}, os.path.join(directory, name + ".pth"))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmdet-python", default=os.environ.get("MMDET_PYTHON",
                                                            "/work/mmref/venv/bin/python"),
                    help="python of an environment with mmdetection 3.x and mmcv 2.x")
    ap.add_argument("--ours-only", action="store_true", help="time our runtimes only")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0]  # 500 x 741 RGB
    with tempfile.TemporaryDirectory() as directory:
        image_path = os.path.join(directory, "image.npy")
        np.save(image_path, image)
        candidates = {}
        if args.ours_only:
            seeded_checkpoints(directory)
        else:
            mmdet = MMDetWorker(args.mmdet_python, image_path, directory)
            candidates = {("mmdetection", key): (lambda k=key: mmdet.seconds(k)) for key in CONFIGS}
        ours = our_runtimes(directory)
        for (key, kind), detector in ours.items():
            def run(d=detector):
                start = time.perf_counter()
                d.predict([image], score_threshold=0.05, max_detections=100)
                return time.perf_counter() - start
            candidates[kind, key] = run
        for fn in candidates.values():  # warm-up
            fn()
        best = {name: float("inf") for name in candidates}
        for _ in range(args.rounds):
            for name, fn in candidates.items():
                best[name] = min(best[name], fn())
        if not args.ours_only:
            mmdet.close()
            print(f"mmdetection {mmdet.versions['mmdet']}, mmcv {mmdet.versions['mmcv']}")
    print(f"image {image.shape[1]}x{image.shape[0]}; {THREADS} threads; best of {args.rounds}")
    for (who, key), seconds in sorted(best.items(), key=lambda kv: (kv[0][1], kv[1])):
        print(f"  {key:5s} {who:12s} {seconds:7.3f} s  {1 / seconds:6.3f} images/s")
    ours_dconv = min(v for (who, key), v in best.items() if key == "dconv" and who != "mmdetection")
    fastest = min((v, who) for (who, key), v in best.items()
                  if key == "dconv" and who != "mmdetection")[1]
    ours_plain = best[fastest, "plain"]
    if not args.ours_only:
        print(f"ours ({fastest}) / mmdetection, dconv: "
              f"{best['mmdetection', 'dconv'] / ours_dconv:.2f}x images/s (goal >= 2)")
    print(f"our dconv / our plain time ({fastest}): {ours_dconv / ours_plain:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
