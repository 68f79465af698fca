"""Checks inside the GPU image that need no GPU (deploy/test_image.sh pipes this file to the
image's python): the CUDA build of the dcn ops loads and holds CUDA kernels, both ONNX Runtime op
libraries load and run, every shared library they need resolves (ldd), and onnxruntime-gpu lists
the CUDA execution provider. Prints what it found; exits 1 on the first failed check.

    docker run --rm -i --entrypoint python dcnserve:latest - < deploy/gpu_image_checks.py
"""
import glob
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

import model.ops  # noqa: F401  (loads model/_C: torch.ops.dcn)
import onnx_plugins

# Brought by the NVIDIA Container Toolkit with the driver when a GPU is reserved, never in an image.
DRIVER_LIBRARIES = {"libcuda.so.1", "libnvidia-ml.so.1"}
# onnx writes its newest IR version by default; onnxruntime-gpu 1.31 reads up to 13.
IR_VERSION = 10


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        sys.exit(1)


def unresolved(path, with_torch):
    """Libraries `ldd path` cannot find. with_torch: torch's and its CUDA wheels' folders on the
    search path (model/_C's libtorch and libcudart, which torch loads before it); the ORT
    libraries must resolve by themselves (their run path into the venv's CUDA wheels)."""
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    if with_torch:
        site = os.path.dirname(os.path.dirname(torch.__file__))
        folders = [os.path.join(site, "torch", "lib")]
        env["LD_LIBRARY_PATH"] = ":".join(folders + glob.glob(os.path.join(site, "nvidia", "*",
                                                                           "lib")))
    out = subprocess.run(["ldd", path], capture_output=True, text=True, env=env,
                         check=True).stdout
    missing = {line.split()[0] for line in out.splitlines() if "not found" in line}
    return missing - DRIVER_LIBRARIES


def roi_pool_model():
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("X", "R")]
    node = helper.make_node("DeformRoIPool", ["X", "R"], ["Y"], domain="dcn", pooled_size=[2, 2])
    graph = helper.make_graph([node], "pool", ins,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, ir_version=IR_VERSION,
                             opset_imports=[helper.make_opsetid("", 19),
                                            helper.make_opsetid("dcn", 1)])


def main():
    check(torch.version.cuda is not None and torch.backends.cuda.is_built(),
          f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda})")
    for op in ("deform_conv2d", "deform_roi_pool", "ps_deform_roi_pool"):
        check(torch._C._dispatch_has_kernel_for_dispatch_key(f"dcn::{op}", "CUDA"),
              f"model/_C registers a CUDA kernel for dcn::{op}")
    providers = ort.get_available_providers()
    check("CUDAExecutionProvider" in providers,
          f"onnxruntime {ort.__version__} lists CUDAExecutionProvider ({', '.join(providers)})")
    pool = roi_pool_model().SerializeToString()
    feeds = {"X": np.ones((1, 1, 4, 4), np.float32), "R": np.array([[0, 0, 0, 3, 3]], np.float32)}
    for cuda in (False, True):
        path = onnx_plugins.library_path(cuda=cuda)
        options = ort.SessionOptions()
        options.register_custom_ops_library(path)
        y = ort.InferenceSession(pool, options, providers=["CPUExecutionProvider"]).run(
            None, feeds)[0]
        check(np.allclose(y, 1.0), f"{os.path.basename(path)} loads and runs (CPU provider)")
    libraries = [(p, True) for p in glob.glob(os.path.join(os.path.dirname(model.ops.__file__),
                                                           "_C*.so"))]
    libraries += [(onnx_plugins.library_path(cuda=c), False) for c in (False, True)]
    for path, with_torch in libraries:
        missing = unresolved(path, with_torch)
        check(not missing, f"ldd {os.path.relpath(path)}: every library resolves"
              + (f" (missing: {', '.join(sorted(missing))})" if missing else ""))


if __name__ == "__main__":
    main()
