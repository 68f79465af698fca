import pytest
import torch

import model.ops  # noqa: F401  (loads torch.ops.dcn)

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine: CUDA kernels compiled only"
)


@pytest.fixture(scope="session")
def runtime_cache(tmp_path_factory) -> str:
    """One cache of exported TorchScript / ONNX Runtime folders for the whole test session."""
    return str(tmp_path_factory.mktemp("runtime_cache"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
