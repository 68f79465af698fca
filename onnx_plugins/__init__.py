"""ONNX Runtime custom-op library for the dcn operators (domain "dcn", version 1).

``library_path()`` is the built ``libdcn_ort.so`` (no libtorch inside); ``session()`` opens an
``onnxruntime.InferenceSession`` with it registered. Build it with ``make setup``.
"""
import os
from typing import Optional, Sequence

DOMAIN = "dcn"
_LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")


def library_path(cuda: bool = False) -> str:
    """Absolute path of libdcn_ort.so (CPU kernels) or, with cuda=True, of libdcn_ort_cuda.so
    (CPU and CUDA kernels; needs libcudart/libcublas 13 at load time).

    Raises FileNotFoundError if it is not built (``make setup``; the CUDA one needs nvcc).
    """
    path = os.path.join(_LIB_DIR, "libdcn_ort_cuda.so" if cuda else "libdcn_ort.so")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not built; run `make setup`")
    return path


def has_library(cuda: bool = False) -> bool:
    """Whether library_path(cuda) is built."""
    return os.path.exists(os.path.join(_LIB_DIR, "libdcn_ort_cuda.so" if cuda else "libdcn_ort.so"))


def _wants_cuda(providers: Sequence) -> bool:
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in providers]
    return "CUDAExecutionProvider" in names


def session_options(options=None, cuda: bool = False):
    """`options` (or new SessionOptions) with the dcn library registered."""
    import onnxruntime as ort

    options = options if options is not None else ort.SessionOptions()
    options.register_custom_ops_library(library_path(cuda))
    return options


def session(model, providers: Optional[Sequence] = None, options=None):
    """InferenceSession for `model` (path or serialized bytes) with the dcn ops available.

    providers: ONNX Runtime execution providers, default CPU. With "CUDAExecutionProvider" the
    CUDA-enabled library is registered (and onnxruntime-gpu's CUDA libraries preloaded).
    """
    import onnxruntime as ort

    providers = list(providers or ["CPUExecutionProvider"])
    cuda = _wants_cuda(providers)
    if cuda and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    return ort.InferenceSession(model, session_options(options, cuda), providers=providers)
