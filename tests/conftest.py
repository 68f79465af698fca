"""Fixtures and markers for every test folder (tests/<package>/ mirrors model/ and service/).

`@pytest.mark.cuda`: the test needs a CUDA GPU; without one it is skipped, saying so."""
import pytest
import torch

import model.ops  # noqa: F401  (loads torch.ops.dcn)

NO_GPU = "no CUDA GPU on this machine: CUDA kernels compiled only"


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        pytest.skip(NO_GPU)


@pytest.fixture(scope="session")
def runtime_cache(tmp_path_factory) -> str:
    """One cache of exported TorchScript / ONNX Runtime folders for the whole test session."""
    return str(tmp_path_factory.mktemp("runtime_cache"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
