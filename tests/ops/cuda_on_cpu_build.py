"""Where `make cuda-on-cpu` builds the CUDA sources for the CPU: build/cuda_on_cpu, or
DCN_CUDA_ON_CPU_DIR (`make test-asan` points it at its sanitized build)."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB_DIR = os.environ.get("DCN_CUDA_ON_CPU_DIR", os.path.join(ROOT, "build", "cuda_on_cpu"))


def built_library(name: str) -> str:
    """Path of library `name` in LIB_DIR; skips the calling test module when it is not built."""
    path = os.path.join(LIB_DIR, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not built: run `make test-cuda-cpu`", allow_module_level=True)
    return path


def load_torch_ops():
    """torch.ops.dcn_cuda_on_cpu (the CUDA kernels of the torch ops, as CPU kernels)."""
    import torch

    torch.ops.load_library(built_library("libdcn_torch_cuda_on_cpu.so"))
    return torch.ops.dcn_cuda_on_cpu
