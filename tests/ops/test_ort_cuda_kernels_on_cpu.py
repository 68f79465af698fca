"""The ONNX Runtime op library's CUDA kernels (onnx_plugins/src/ops_cuda.cu: the image and weight
transposes, the bias fill, the column plan and chunks, the cuBLAS GEMM's arguments, RoI pooling)
run on the CPU against the library's CPU kernels: the same source compiled by g++ over
csrc/emulation (cuBLAS a reference GEMM taking cuBLAS's arguments), registered for the CPU
execution provider in build/cuda_on_cpu/libdcn_ort_cuda_on_cpu.so (`make test-cuda-cpu`)."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from cuda_on_cpu_build import built_library
from onnx import TensorProto, helper
from test_deform_conv2d import GRID, make_case
from test_deform_roi_pool import make

import onnx_plugins

LIBRARY = built_library("libdcn_ort_cuda_on_cpu.so")
ELEMENT = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}


def node_model(op, inputs, dtype, **attrs):
    """One dcn node; inputs named "" are absent optional inputs."""
    elem = ELEMENT[dtype]
    ins = [helper.make_tensor_value_info(n, elem, None) for n in inputs if n]
    node = helper.make_node(op, inputs, ["Y"], domain="dcn", **attrs)
    graph = helper.make_graph([node], op, ins, [helper.make_tensor_value_info("Y", elem, None)])
    opsets = [helper.make_opsetid("", 19), helper.make_opsetid("dcn", 1)]
    # IR 10: what every ONNX Runtime here reads (onnx writes its newest by default).
    return helper.make_model(graph, ir_version=10, opset_imports=opsets).SerializeToString()


def run(library, model, feeds):
    options = ort.SessionOptions()
    # Without the arena every scratch block is its own allocation: a workspace sized short of
    # what the kernels touch is then an overflow AddressSanitizer reports (`make test-asan`).
    options.enable_cpu_mem_arena = False
    options.register_custom_ops_library(library)
    sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def conv_feeds(case, with_mask=True, with_bias=True, pads=None, **kw):
    """Feeds (X, W, O, B, M as present), input names and DeformConv attributes of a GRID case."""
    x, w, off, mask, bias, geometry = make_case(case, dtype=torch.float32, with_mask=with_mask,
                                                with_bias=with_bias, **kw)
    (ph, pw) = geometry["padding"]
    feeds = {"X": x, "W": w, "O": off, "B": bias, "M": mask}
    names = [n if feeds[n] is not None else "" for n in feeds]
    while not names[-1]:
        names.pop()
    attrs = dict(kernel_shape=list(w.shape[2:]), strides=list(geometry["stride"]),
                 pads=pads or [ph, pw, ph, pw], dilations=list(geometry["dilation"]),
                 group=case[9], offset_group=case[10])
    return {n: t.numpy() for n, t in feeds.items() if t is not None}, names, attrs


def assert_conv_matches_cpu(feeds, names, attrs):
    model = node_model("DeformConv2d", names, np.float32, **attrs)
    got = run(LIBRARY, model, feeds)
    want = run(onnx_plugins.library_path(), model, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    return got


@pytest.mark.parametrize("with_mask,with_bias", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("case", GRID)
def test_deform_conv2d_cuda_kernel_matches_cpu_kernel(case, with_mask, with_bias):
    assert_conv_matches_cpu(*conv_feeds(case, with_mask, with_bias))


def test_deform_conv2d_asymmetric_pads():
    """Pads (top, left, bottom, right) = (0, 2, 1, 0): a 6 x 5 output where (0, 1, 0, 1) gives
    5 x 5."""
    feeds, names, attrs = conv_feeds(GRID[3], pads=[0, 2, 1, 0])
    rng = np.random.default_rng(5)
    feeds["O"] = rng.standard_normal((1, 24, 6, 5), dtype=np.float32) * 2
    feeds["M"] = rng.random((1, 12, 6, 5), dtype=np.float32)
    out = assert_conv_matches_cpu(feeds, names, attrs)
    assert out.shape == (1, 6, 6, 5)


def test_deform_conv2d_empty_batch():
    feeds, names, attrs = conv_feeds(GRID[0])
    feeds = {n: v[:0] if n in ("X", "O", "M") else v for n, v in feeds.items()}
    assert assert_conv_matches_cpu(feeds, names, attrs).shape == (0, 6, 7, 8)


@pytest.mark.parametrize("value", [1e4, float("nan"), float("inf"), -float("inf")])
def test_deform_conv2d_far_out_and_non_finite_offsets(value):
    feeds, names, attrs = conv_feeds(GRID[2])
    feeds["O"][:, ::3] = value
    out = assert_conv_matches_cpu(feeds, names, attrs)
    assert np.isfinite(out).all()


def test_deform_conv2d_several_chunks_per_image():
    """One image's columns pass a chunk (2^23 entries): the GEMM writes at column offsets p0 of
    the output rows, and the grouped GEMMs of each chunk at their channel offsets."""
    case = (2, 128, 8, 96, 96, (3, 3), (1, 1), (1, 1), (1, 1), 2, 2)
    feeds, names, attrs = conv_feeds(case, offset_scale=2.0)
    feeds["W"] *= 0.05
    assert_conv_matches_cpu(feeds, names, attrs)


@pytest.mark.parametrize("case", [GRID[0], GRID[4]])
def test_deform_conv2d_float16_kernel(case):
    """The half kernels: half storage, float accumulation, the GEMM in CUDA_R_16F."""
    feeds, names, attrs = conv_feeds(case, offset_scale=1.0)
    feeds["W"] *= 0.2
    half = {n: v.astype(np.float16) for n, v in feeds.items()}
    got = run(LIBRARY, node_model("DeformConv2d", names, np.float16, **attrs), half)
    want = run(onnx_plugins.library_path(), node_model("DeformConv2d", names, np.float32, **attrs),
               {n: v.astype(np.float32) for n, v in half.items()})
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-2, atol=2e-2)


def roi_feeds(position_sensitive, with_offset=True):
    x, rois, offset = make(position_sensitive, dtype=torch.float32)
    edge = torch.tensor([[0, 0.0, 0.0, 22.0, 18.0], [1, 24.0, 20.0, 40.0, 30.0],
                         [0, -30.0, -30.0, -2.0, -2.0]])
    rois = torch.cat([rois, edge])
    offset = torch.cat([offset, torch.randn(3, *offset.shape[1:])])
    feeds = {"X": x.numpy(), "R": rois.numpy()}
    if with_offset:
        feeds["O"] = offset.numpy()
    return feeds


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("sampling_ratio,aligned", [(2, 1), (0, 1), (1, 0)])
@pytest.mark.parametrize("with_offset", [True, False])
@pytest.mark.parametrize("op", ["DeformRoIPool", "PSDeformRoIPool"])
def test_roi_pool_cuda_kernel_matches_cpu_kernel(op, with_offset, sampling_ratio, aligned, dtype):
    feeds = roi_feeds(op.startswith("PS"), with_offset)
    attrs = dict(pooled_size=[3, 2], spatial_scale=0.5, sampling_ratio=sampling_ratio, gamma=0.1,
                 aligned=aligned)
    typed = {n: v.astype(dtype) for n, v in feeds.items()}
    got = run(LIBRARY, node_model(op, list(feeds), dtype, **attrs), typed)
    want = run(onnx_plugins.library_path(), node_model(op, list(feeds), np.float32, **attrs),
               {n: v.astype(np.float32) for n, v in typed.items()})
    assert got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-2
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=tol, atol=tol)


def test_roi_pool_cuda_kernel_rejects_bad_batch_indices():
    feeds = roi_feeds(False)
    feeds["R"][1, 0] = 7
    model = node_model("DeformRoIPool", list(feeds), np.float32, pooled_size=[3, 2])
    with pytest.raises(Exception, match="batch ind"):
        run(LIBRARY, model, feeds)
