"""Builds the dcn operator library `model._C` (CPU, plus CUDA when nvcc is available).

Environment: FORCE_CUDA=1 builds the CUDA kernels even without a GPU (CI does, to keep them
compiling); FORCE_CUDA=0 skips them; DCN_SANITIZE=address builds the CPU kernels with
AddressSanitizer (see `make test-asan`).
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def want_cuda() -> bool:
    forced = os.environ.get("FORCE_CUDA")
    if forced is not None:
        return forced == "1"
    return CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))


def dcn_extension():
    sources = sorted(glob.glob("csrc/torch/*.cpp"))
    cxx = ["-O3", "-fopenmp"]
    link = ["-fopenmp"]
    sanitize = os.environ.get("DCN_SANITIZE")
    if sanitize:
        cxx = ["-O1", "-g", "-fno-omit-frame-pointer", f"-fsanitize={sanitize}", "-fopenmp"]
        link += [f"-fsanitize={sanitize}"]
    if want_cuda() and not sanitize:
        return CUDAExtension(
            "model._C",
            sources + sorted(glob.glob("csrc/torch/*.cu")),
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
            extra_link_args=link,
        )
    return CppExtension("model._C", sources, extra_compile_args={"cxx": cxx},
                        extra_link_args=link)


setup(
    packages=find_packages(include=["model*", "service*", "onnx_plugins*"]),
    # The shipped detector, the web page and (when built first) the ONNX Runtime op libraries.
    package_data={"model": ["weights/*.safetensors", "weights/*.json"],
                  "service": ["static/*"], "onnx_plugins": ["lib/*.so"]},
    ext_modules=[dcn_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
