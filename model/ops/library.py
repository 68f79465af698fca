"""Loads the compiled dcn operator library (`model._C`) into torch.ops.dcn."""
import importlib.machinery
import os

import torch


def _library_path() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # model/
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_C" + suffix)
        if os.path.exists(path):
            return path
    raise ImportError(
        f"the dcn operator library model/_C*.so is not built in {here}; run `make setup` "
        "(or `python setup.py build_ext --inplace`)"
    )


def load() -> None:
    if not hasattr(torch.ops.dcn, "deform_conv2d"):
        torch.ops.load_library(_library_path())


load()
