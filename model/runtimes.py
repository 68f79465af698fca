"""The detector on other runtimes: TorchScript and ONNX Runtime (with the `dcn` custom ops).

    detector = load_runtime("onnxruntime")            # shipped model, exported once, cached
    detector.predict([...]); detector.sampling_points(image, x, y)

`export_runtime` writes a self-contained folder: the detector (TorchScript `detector.pt` or ONNX
`detector.onnx`), its offset probe (`probe.pt` / `probe.onnx`, see model.sampling.OffsetProbe)
and `runtime.json` (checkpoint config, deformable-layer geometry). Loading one needs no
checkpoint. Tiling, NMS merging and offset composition are shared with the eager Detector.
"""
import hashlib
import json
import os
import shutil
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from .inference import DEFAULT_CHECKPOINT, Detector, load_detector
from .sampling import OffsetProbe

KINDS = ("torch", "torchscript", "onnxruntime")
FORMAT = "dcnserve-runtime/1"


def transform_from_config(config: Dict[str, Any]) -> GeneralizedRCNNTransform:
    """The detector's preprocessing (resize + ImageNet normalisation), rebuilt from its config
    with FasterRCNN's defaults."""
    arch = config.get("architecture", {})
    return GeneralizedRCNNTransform(int(arch.get("min_size", 800)), int(arch.get("max_size", 1333)),
                                    [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def export_runtime(detector: Detector, kind: str, directory: str) -> str:
    """Writes the `kind` ("torchscript" | "onnxruntime") runtime of an eager detector."""
    from .export import export_onnx, export_torchscript

    os.makedirs(directory, exist_ok=True)
    model = detector.model.cpu().eval()
    size = detector.tile_size
    example, _ = detector.preprocess(torch.rand(3, size, size))
    probe = OffsetProbe(model).eval()
    if kind == "torchscript":
        export_torchscript(detector, os.path.join(directory, "detector.pt"))
        with torch.no_grad():
            torch.jit.trace(probe, example.cpu(), check_trace=False).save(
                os.path.join(directory, "probe.pt"))
    elif kind == "onnxruntime":
        from onnx_plugins.export import export

        export_onnx(detector, os.path.join(directory, "detector.onnx"))
        names = [f"{what}_{i}" for i in range(len(detector.layers)) for what in ("offset", "mask")]
        export(probe, (example.cpu(),), os.path.join(directory, "probe.onnx"), ["input"], names,
               {"input": {2: "height", 3: "width"}, **{n: {2: "h", 3: "w"} for n in names}})
    else:
        raise ValueError(f"unknown runtime {kind!r}; exportable: torchscript, onnxruntime")
    with open(os.path.join(directory, "runtime.json"), "w") as f:
        json.dump({"format": FORMAT, "kind": kind, "config": detector.config,
                   "layers": detector.layers}, f, indent=1)
    return directory


class _RuntimeDetector(Detector):
    def __init__(self, directory: str, kind: str, device: str) -> None:
        path = os.path.join(directory, "runtime.json")
        with open(path) as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT or meta.get("kind") != kind:
            raise ValueError(f"{path} is not a {kind} runtime of format {FORMAT}")
        self._setup(meta["config"], device, transform_from_config(meta["config"]), meta["layers"])


class TorchScriptDetector(_RuntimeDetector):
    """The detector as TorchScript (needs `model.ops` for the dcn operators, nothing else)."""

    def __init__(self, directory: str, device: str = "cpu") -> None:
        super().__init__(directory, "torchscript", device)
        self.model = torch.jit.load(os.path.join(directory, "detector.pt"), map_location=device)
        self._probe = torch.jit.load(os.path.join(directory, "probe.pt"), map_location=device)

    def _run(self, tiles: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        return self.model(tiles)[1]  # scripted detectors return (losses, detections)


class OnnxRuntimeDetector(_RuntimeDetector):
    """The detector as ONNX graphs run by ONNX Runtime with the dcn op library (CUDA execution
    provider when device is cuda)."""

    def __init__(self, directory: str, device: str = "cpu") -> None:
        import onnx_plugins

        super().__init__(directory, "onnxruntime", device)
        cuda = self.device.type == "cuda"
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda
                     else ["CPUExecutionProvider"])
        self.session = onnx_plugins.session(os.path.join(directory, "detector.onnx"), providers)
        self.probe_session = onnx_plugins.session(os.path.join(directory, "probe.onnx"), providers)

    def _run(self, tiles: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        out = []
        for tile in tiles:  # the exported graph takes one image
            boxes, labels, scores = self.session.run(None, {"image": tile.cpu().numpy()})
            out.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                        "scores": torch.from_numpy(scores)})
        return out

    def probe(self, batch: torch.Tensor) -> List[np.ndarray]:
        return self.probe_session.run(None, {"input": batch.cpu().numpy()})


def _cache_key(stem: str, kind: str) -> str:
    digest = hashlib.sha256()
    for suffix in (".safetensors", ".json"):
        with open(stem + suffix, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    digest.update(f"{kind} {torch.__version__} {FORMAT}".encode())
    return digest.hexdigest()[:16]


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                        "dcnserve")


def load_runtime(kind: str = "torch", checkpoint: Optional[str] = None, device: str = "cpu",
                 cache_dir: Optional[str] = None) -> Detector:
    """The checkpoint (stem; default: the shipped model) on runtime `kind`. TorchScript and ONNX
    runtimes are exported on first use into `cache_dir`, keyed by the checkpoint's content."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    stem = checkpoint or DEFAULT_CHECKPOINT
    if kind == "torch":
        return load_detector(stem, device)
    directory = os.path.join(cache_dir or default_cache_dir(), f"{kind}-{_cache_key(stem, kind)}")
    if not os.path.exists(os.path.join(directory, "runtime.json")):
        tmp = f"{directory}.tmp{os.getpid()}"
        export_runtime(load_detector(stem, "cpu"), kind, tmp)
        try:
            os.rename(tmp, directory)
        except OSError:  # another process exported it first
            shutil.rmtree(tmp, ignore_errors=True)
    cls = TorchScriptDetector if kind == "torchscript" else OnnxRuntimeDetector
    return cls(directory, device)
