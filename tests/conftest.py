import pytest
import torch

import model  # noqa: F401  (loads torch.ops.dcn)

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine: CUDA kernels compiled only"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
