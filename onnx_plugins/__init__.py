"""ONNX Runtime custom-op library for the dcn operators (domain "dcn", version 1).

``library_path()`` is the built ``libdcn_ort.so`` (no libtorch inside); ``session()`` opens an
``onnxruntime.InferenceSession`` with it registered. Build it with ``make setup``.
"""
import os
from typing import Optional, Sequence

DOMAIN = "dcn"
_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "libdcn_ort.so")


def library_path() -> str:
    """Absolute path of libdcn_ort.so; raises FileNotFoundError if it is not built."""
    if not os.path.exists(_LIB):
        raise FileNotFoundError(f"{_LIB} is not built; run `make setup`")
    return _LIB


def session_options(options=None):
    """`options` (or new SessionOptions) with the dcn library registered."""
    import onnxruntime as ort

    options = options if options is not None else ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    return options


def session(model, providers: Optional[Sequence] = None, options=None):
    """InferenceSession for `model` (path or serialized bytes) with the dcn ops available.

    providers: ONNX Runtime execution providers, default CPU.
    """
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(options),
                                providers=list(providers or ["CPUExecutionProvider"]))
