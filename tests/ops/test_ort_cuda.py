"""The ONNX Runtime op library on the CUDA execution provider: our CUDA kernels run (not a silent
CPU fallback: the library registers CPU kernels too), and sessions come and go without leaking
host or GPU memory. Needs a GPU and onnxruntime-gpu (the GPU image has both; `make gpu-check`
runs these); elsewhere they skip and say so."""
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="no `onnx` package: the ORT test models cannot be built")
import onnxruntime as ort  # noqa: E402
from test_onnx_plugins import GRID, conv_case, single_node_model  # noqa: E402

import onnx_plugins  # noqa: E402

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers() or not torch.cuda.is_available(),
    reason="no CUDA GPU / onnxruntime-gpu here: the CUDA EP kernels are compiled only")


def cuda_session(model, profile_dir=None):
    options = ort.SessionOptions()
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, "dcn")
    return onnx_plugins.session(model, ["CUDAExecutionProvider"], options)


def test_deform_conv2d_runs_our_cuda_kernel(tmp_path):
    feeds, attrs = conv_case(GRID[0], np.random.default_rng(8))
    sess = cuda_session(single_node_model("DeformConv2d", "dcn", list(feeds), **attrs),
                        str(tmp_path))
    assert sess.get_providers()[0] == "CUDAExecutionProvider"
    sess.run(None, feeds)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    nodes = [e["args"] for e in events if e.get("cat") == "Node" and "op_name" in e.get("args", {})]
    providers = {a["provider"] for a in nodes if a["op_name"] == "DeformConv2d"}
    assert providers == {"CUDAExecutionProvider"}, providers


def memory_in_use():
    """(host resident bytes, device bytes in use by anyone on this GPU)."""
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    free, total = torch.cuda.mem_get_info()
    return rss, total - free


def test_sessions_come_and_go_without_leaking():
    """Each session's arena grows to ~16 MB here; a kernel that kept its allocator (and so the
    arena) alive would add that much per session."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 64, 64, 64), dtype=np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    o = rng.standard_normal((1, 18, 64, 64), dtype=np.float32)
    model = single_node_model("DeformConv2d", "dcn", ["X", "W", "O"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1])

    def cycle():
        sess = cuda_session(model)
        sess.run(None, {"X": x, "W": w, "O": o})
        del sess

    for _ in range(5):  # CUDA/cuBLAS/cuDNN contexts and ORT's one-time state
        cycle()
    host0, gpu0 = memory_in_use()
    for _ in range(20):
        cycle()
    host1, gpu1 = memory_in_use()
    mb = 1 << 20
    assert gpu1 - gpu0 < 64 * mb, f"GPU memory grew {(gpu1 - gpu0) / mb:.0f} MB over 20 sessions"
    assert host1 - host0 < 64 * mb, f"host memory grew {(host1 - host0) / mb:.0f} MB"
