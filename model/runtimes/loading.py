"""The detector on any runtime: eager PyTorch, TorchScript or ONNX Runtime (with the dcn ops).

    detector = load_runtime("onnxruntime")            # shipped model, exported once, cached
    detector.predict([...]); detector.sampling_points(image, x, y)

Each runtime (model.inference.runtime.Runtime) sits under one
model.inference.tiling.TiledDetector, which owns tiling, test-time augmentation and merging.
TorchScript and ONNX Runtime folders are exported from the checkpoint on first use
(model.runtimes.export) into a cache keyed by the checkpoint's content. Importing this module,
or loading an already exported ONNX Runtime folder, does not import torch.
"""
import hashlib
import importlib.metadata
import os
import shutil
from typing import Any, Dict, Optional

from model.detector.checkpoint import DEFAULT_CHECKPOINT, paths
from model.inference.runtime import FORMAT
from model.inference.tiling import TiledDetector

KINDS = ("torch", "torchscript", "onnxruntime")
BACKENDS = ("auto",) + KINDS  # what load_runtime and the service accept
DEVICES = ("cpu", "cuda", "auto")


def _driver_sees_a_gpu() -> bool:
    """Whether the NVIDIA driver shows this process a GPU, asked without torch. (onnxruntime-gpu
    lists its CUDA provider wherever it is installed, GPU or not.)"""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return (driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0
            and count.value > 0)


def _has_cuda_gpu() -> bool:
    try:
        import torch
    except ImportError:  # a torch-free install
        return _driver_sees_a_gpu()
    return torch.cuda.is_available()


def auto_kind(device: str = "auto") -> str:
    """The fastest runtime with the same detections on `device` ("cpu", "cuda" or "auto"), as
    measured (benchmarks/before_after.py, README "Speed"): ONNX Runtime with the dcn op library
    on the CPU (eager PyTorch if that library or onnxruntime is missing); eager PyTorch on CUDA,
    whose kernels the GPU check covers (no GPU figure has ranked the runtimes there yet)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" or (device == "auto" and _has_cuda_gpu()):
        return "torch"
    import importlib.util

    import onnx_plugins

    usable = importlib.util.find_spec("onnxruntime") is not None and onnx_plugins.has_library()
    return "onnxruntime" if usable else "torch"


def resolve_device(kind: str, device: str) -> str:
    """"cpu" or "cuda" for `device` ("auto": cuda when `kind` can use a GPU here)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if kind == "onnxruntime":
        import onnxruntime as ort

        import onnx_plugins

        cuda = ("CUDAExecutionProvider" in ort.get_available_providers()
                and onnx_plugins.has_library(cuda=True) and _driver_sees_a_gpu())
    elif device != "cpu":
        import torch

        cuda = torch.cuda.is_available()
    else:
        cuda = False
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise RuntimeError(f"device=cuda but the {kind} runtime has no CUDA device here")
    return device


def _cache_key(stem: str, kind: str) -> str:
    digest = hashlib.sha256()
    for path in paths(stem):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    # the exported graphs depend on the exporting torch; its version is read without importing it
    digest.update(f"{kind} {importlib.metadata.version('torch')} {FORMAT}".encode())
    return digest.hexdigest()[:16]


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                        "dcnserve")


def exported_runtime(kind: str, checkpoint: Optional[str] = None,
                     cache_dir: Optional[str] = None) -> str:
    """The cached folder of checkpoint `checkpoint` exported for `kind`, exporting it if needed."""
    stem = checkpoint or DEFAULT_CHECKPOINT
    directory = os.path.join(cache_dir or default_cache_dir(), f"{kind}-{_cache_key(stem, kind)}")
    if not os.path.exists(os.path.join(directory, "runtime.json")):
        from model.detector.zoo import load_model

        from .export import export_runtime

        tmp = f"{directory}.tmp{os.getpid()}"
        export_runtime(*load_model(stem), kind, tmp)
        try:
            os.rename(tmp, directory)
        except OSError:  # another process exported it first
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_runtime(kind: str = "torch", checkpoint: Optional[str] = None, device: str = "cpu",
                 cache_dir: Optional[str] = None, threads: int = 0) -> TiledDetector:
    """The checkpoint (stem; default: the shipped model) on runtime `kind` ("auto": see
    auto_kind; the chosen one is `.runtime.kind`), on `device` ("cpu", "cuda" or "auto");
    threads: intra-op threads (0: the runtime's default)."""
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    if kind == "auto":
        kind = auto_kind(device)
    device = resolve_device(kind, device)
    if kind == "onnxruntime":
        from .ort import OnnxRuntimeRuntime

        directory = exported_runtime(kind, checkpoint, cache_dir)
        return TiledDetector(OnnxRuntimeRuntime(directory, device, threads))
    import torch

    if threads:
        torch.set_num_threads(threads)
    if kind == "torch":
        return load_detector(checkpoint, device)
    from .pytorch import TorchScriptRuntime

    return TiledDetector(TorchScriptRuntime(exported_runtime(kind, checkpoint, cache_dir), device))


def eager_detector(model, config: Dict[str, Any], device: str = "cpu") -> TiledDetector:
    """A tiled detector over an nn.Module detector (the eager runtime); config: its checkpoint
    config (tile settings, architecture, ...)."""
    from .pytorch import EagerRuntime

    return TiledDetector(EagerRuntime(model, config, device))


def load_detector(checkpoint: Optional[str] = None, device: str = "cpu") -> TiledDetector:
    """The detector saved at checkpoint stem `checkpoint` (default: the shipped model), eager."""
    from model.detector.zoo import load_model

    return eager_detector(*load_model(checkpoint), device)
