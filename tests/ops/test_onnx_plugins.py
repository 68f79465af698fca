"""The ONNX Runtime custom-op library: parity with ORT's native DeformConv and the torch ops,
export of modules using each op, and errors (not crashes) for bad input."""
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import onnx_plugins
from model import ops
from model.ops.layers import DeformConv2d, DeformRoIPool, ModulatedDeformConv2d, PSDeformRoIPool
from model.ops.onnx_symbolic import export

F32 = TensorProto.FLOAT


def single_node_model(op, domain, inputs, **attrs):
    ins = [helper.make_tensor_value_info(n, F32, None) for n in inputs if n]
    node = helper.make_node(op, inputs, ["Y"], domain=domain, **attrs)
    graph = helper.make_graph([node], op, ins, [helper.make_tensor_value_info("Y", F32, None)])
    opsets = [helper.make_opsetid("", 19)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    # IR 10: what every ONNX Runtime here reads (onnx writes its newest, which the GPU image's
    # onnxruntime-gpu 1.31 refuses).
    return helper.make_model(graph, ir_version=10, opset_imports=opsets).SerializeToString()


def test_library_has_no_libtorch():
    out = subprocess.run(["ldd", onnx_plugins.library_path()], capture_output=True, text=True,
                         check=True).stdout
    assert "libtorch" not in out and "libc10" not in out
    assert "not found" not in out


@pytest.mark.skipif(not os.path.exists(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                                                    "bin", "nvcc")),
                    reason="no nvcc on this machine: the CUDA library is not built")
def test_cuda_library_is_built_without_libtorch():
    out = subprocess.run(["ldd", onnx_plugins.library_path(cuda=True)], capture_output=True,
                         text=True, check=True).stdout
    assert "libtorch" not in out and "libc10" not in out
    assert "libcublas" in out


def defined_dynamic_symbols(path):
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True,
                         check=True).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


def test_library_exports_only_register_custom_ops_and_still_loads():
    assert defined_dynamic_symbols(onnx_plugins.library_path()) == ["RegisterCustomOps"]
    so = ort.SessionOptions()
    so.register_custom_ops_library(onnx_plugins.library_path())
    model = single_node_model("DeformRoIPool", "dcn", ["X", "rois"], pooled_size=[2, 2])
    x = np.ones((1, 1, 4, 4), np.float32)
    rois = np.array([[0, 0, 0, 3, 3]], np.float32)
    y = ort.InferenceSession(model, so).run(None, {"X": x, "rois": rois})[0]
    np.testing.assert_allclose(y, np.ones((1, 1, 2, 2), np.float32))


@pytest.mark.skipif(not os.path.exists(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                                                    "bin", "nvcc")),
                    reason="no nvcc on this machine: the CUDA library is not built")
def test_cuda_library_exports_only_register_custom_ops():
    assert defined_dynamic_symbols(onnx_plugins.library_path(cuda=True)) == ["RegisterCustomOps"]


# (N, C, C_out, H, W, (kh, kw), strides, pads (t, l, b, r), dilations, group, offset_group)
GRID = [
    (2, 4, 6, 7, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, 1),
    (1, 4, 4, 9, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, 2),
    (2, 6, 4, 8, 8, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, 3),
    (1, 4, 6, 6, 9, (2, 3), (1, 2), (0, 1, 1, 0), (1, 1), 2, 1),
    (1, 8, 8, 7, 7, (3, 1), (1, 1), (1, 0, 1, 0), (2, 1), 4, 2),
]


def conv_case(case, rng):
    """Feeds X, W, O (offset), B, M (mask) and DeformConv attributes for a GRID case."""
    n, c, co, h, w, k, st, pads, dil, g, og = case
    ho = (h + pads[0] + pads[2] - dil[0] * (k[0] - 1) - 1) // st[0] + 1
    wo = (w + pads[1] + pads[3] - dil[1] * (k[1] - 1) - 1) // st[1] + 1
    feeds = {
        "X": rng.standard_normal((n, c, h, w), dtype=np.float32),
        "W": rng.standard_normal((co, c // g, *k), dtype=np.float32),
        "O": (rng.standard_normal((n, 2 * og * k[0] * k[1], ho, wo)) * 2).astype(np.float32),
        "B": rng.standard_normal(co, dtype=np.float32),
        "M": rng.random((n, og * k[0] * k[1], ho, wo), dtype=np.float32),
    }
    attrs = dict(kernel_shape=list(k), strides=list(st), pads=list(pads), dilations=list(dil),
                 group=g, offset_group=og)
    return feeds, attrs


@pytest.mark.parametrize("case", GRID)
@pytest.mark.parametrize("inputs", [["X", "W", "O", "B", "M"], ["X", "W", "O"],
                                    ["X", "W", "O", "", "M"], ["X", "W", "O", "B"]])
def test_deform_conv2d_matches_ort_native_deform_conv(case, inputs):
    feeds, attrs = conv_case(case, np.random.default_rng(0))
    feeds = {k: v for k, v in feeds.items() if k in inputs}
    ours = onnx_plugins.session(single_node_model("DeformConv2d", "dcn", inputs, **attrs))
    native = ort.InferenceSession(single_node_model("DeformConv", "", inputs, **attrs))
    np.testing.assert_allclose(ours.run(None, feeds)[0], native.run(None, feeds)[0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [c for c in GRID if c[7][0] == c[7][2] and c[7][1] == c[7][3]])
def test_deform_conv2d_matches_torch_op(case):
    feeds, attrs = conv_case(case, np.random.default_rng(1))
    ours = onnx_plugins.session(single_node_model("DeformConv2d", "dcn", list(feeds), **attrs))
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    ref = ops.deform_conv2d(t["X"], t["O"], t["W"], t["B"], stride=tuple(attrs["strides"]),
                            padding=tuple(attrs["pads"][:2]), dilation=tuple(attrs["dilations"]),
                            mask=t["M"])
    np.testing.assert_allclose(ours.run(None, feeds)[0], ref.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op,ps", [("DeformRoIPool", False), ("PSDeformRoIPool", True)])
@pytest.mark.parametrize("with_offset", [True, False])
@pytest.mark.parametrize("aligned", [1, 0])
def test_roi_pools_match_torch_ops(op, ps, with_offset, aligned):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 12 if ps else 3, 9, 11), dtype=np.float32)
    rois = np.array([[0, 2, 3, 15, 12], [1, -6, -4, 8, 9], [1, 0, 0, 21, 17]], np.float32)
    offset = rng.standard_normal((3, 2, 3, 2), dtype=np.float32)
    inputs = ["X", "R", "O"] if with_offset else ["X", "R"]
    model = single_node_model(op, "dcn", inputs, pooled_size=[3, 2], spatial_scale=0.5,
                              sampling_ratio=2, gamma=0.1, aligned=aligned)
    feeds = {"X": x, "R": rois, "O": offset}
    out = onnx_plugins.session(model).run(None, {k: feeds[k] for k in inputs})[0]
    fn = ops.ps_deform_roi_pool if ps else ops.deform_roi_pool
    ref = fn(torch.from_numpy(x), torch.from_numpy(rois),
             torch.from_numpy(offset) if with_offset else None, (3, 2), 0.5, 2, 0.1,
             bool(aligned))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ModulatedDeformConv2d(4, 8, 3, padding=1, offset_groups=2, bias=False)
        self.conv1 = DeformConv2d(8, 8, 3, stride=2, padding=1)
        self.pool = DeformRoIPool(8, 2, spatial_scale=0.5)
        self.ps = PSDeformRoIPool(2, 2, spatial_scale=0.5)
        with torch.no_grad():
            self.conv.offset_conv.weight.normal_(0, 0.1)
            self.conv1.offset_conv.weight.normal_(0, 0.1)
            self.pool.offset_fc.weight.normal_(0, 0.01)
            self.ps.offset_fc.weight.normal_(0, 0.01)

    def forward(self, x, rois):
        y = self.conv1(self.conv(x))
        return self.pool(y, rois), self.ps(y, rois)


def test_exported_module_runs_in_onnxruntime_with_dynamic_shapes(tmp_path):
    m = Head().eval()
    rois = torch.tensor([[0, 1.0, 1.0, 19.0, 16.0], [1, 6.0, 0.0, 22.0, 22.0]])
    path = str(tmp_path / "head.onnx")
    export(m, (torch.randn(2, 4, 12, 12), rois), path, ["x", "rois"], ["pooled", "ps"],
           {"x": {0: "batch", 2: "height", 3: "width"}, "rois": {0: "k"}})
    kinds = {(n.domain, n.op_type) for n in onnx.load(path).graph.node}
    assert {("dcn", "DeformConv2d"), ("dcn", "DeformRoIPool"), ("dcn", "PSDeformRoIPool")} <= kinds
    session = onnx_plugins.session(path)
    x = torch.randn(3, 4, 18, 14)  # another batch and image size than at export
    outs = session.run(None, {"x": x.numpy(), "rois": rois.numpy()})
    with torch.no_grad():
        refs = m(x, rois)
    for out, ref in zip(outs, refs):
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_standard_deform_conv_export_needs_no_plugin(tmp_path):
    m = torch.nn.Sequential(ModulatedDeformConv2d(4, 8, 3, padding=1),
                            DeformConv2d(8, 4, 3, padding=1, bias=False)).eval()
    with torch.no_grad():
        m[0].offset_conv.weight.normal_(0, 0.1)
        m[1].offset_conv.weight.normal_(0, 0.1)
    path = str(tmp_path / "std.onnx")
    export(m, (torch.randn(1, 4, 10, 10),), path, ["x"], ["y"], {"x": {0: "n"}},
           standard_deform_conv=True)
    assert all(n.domain == "" for n in onnx.load(path).graph.node)
    x = torch.randn(2, 4, 10, 10)
    out = ort.InferenceSession(path).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("feeds_change,message", [
    (dict(O=np.zeros((2, 30, 7, 8), np.float32)), r"offset must be .* = \[2, 18, 7, 8\]"),
    (dict(M=np.zeros((2, 8, 7, 8), np.float32)), r"mask must be"),
    (dict(B=np.zeros(5, np.float32)), r"bias must be \[6\]"),
    (dict(W=np.zeros((6, 3, 3, 3), np.float32)), r"weight must be"),
])
def test_deform_conv2d_bad_shapes_raise(feeds_change, message):
    feeds, attrs = conv_case(GRID[0], np.random.default_rng(3))
    feeds.update(feeds_change)
    s = onnx_plugins.session(single_node_model("DeformConv2d", "dcn", list(feeds), **attrs))
    with pytest.raises(Exception, match=message):
        s.run(None, feeds)


def test_bad_attributes_and_batch_indices_raise():
    feeds, attrs = conv_case(GRID[0], np.random.default_rng(4))
    with pytest.raises(Exception, match="pads must have 4 values"):
        onnx_plugins.session(single_node_model("DeformConv2d", "dcn", ["X", "W", "O"],
                                               **{**attrs, "pads": [1, 1]})).run(
            None, {k: feeds[k] for k in "XWO"})
    model = single_node_model("DeformRoIPool", "dcn", ["X", "R"], pooled_size=[2])
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(Exception, match="integer batch indices"):
        onnx_plugins.session(model).run(None, {"X": x, "R": np.array([[3, 0, 0, 2, 2]], np.float32)})
    with pytest.raises(Exception, match=r"rois must be \[K, 5\]"):
        onnx_plugins.session(model).run(None, {"X": x, "R": np.zeros((1, 4), np.float32)})


requires_ort_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers()
    or not torch.cuda.is_available(),
    reason="no CUDA GPU / onnxruntime-gpu here: the CUDA EP kernels are compiled only")


@requires_ort_cuda
@pytest.mark.parametrize("case", GRID)
def test_cuda_deform_conv2d_matches_cpu(case):
    feeds, attrs = conv_case(case, np.random.default_rng(5))
    model = single_node_model("DeformConv2d", "dcn", list(feeds), **attrs)
    cpu = onnx_plugins.session(model).run(None, feeds)[0]
    gpu = onnx_plugins.session(model, ["CUDAExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)


@requires_ort_cuda
@pytest.mark.parametrize("op", ["DeformRoIPool", "PSDeformRoIPool"])
def test_cuda_roi_pools_match_cpu(op):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 12, 9, 11), dtype=np.float32)
    rois = np.array([[0, 2, 3, 15, 12], [1, -6, -4, 8, 9]], np.float32)
    feeds = {"X": x, "R": rois, "O": rng.standard_normal((2, 2, 3, 2), dtype=np.float32)}
    model = single_node_model(op, "dcn", ["X", "R", "O"], pooled_size=[3, 2], spatial_scale=0.5)
    cpu = onnx_plugins.session(model).run(None, feeds)[0]
    gpu = onnx_plugins.session(model, ["CUDAExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


@requires_ort_cuda
def test_cuda_deform_conv2d_float16():
    feeds, attrs = conv_case(GRID[2], np.random.default_rng(7))
    ref = onnx_plugins.session(single_node_model("DeformConv2d", "dcn", list(feeds), **attrs)).run(
        None, feeds)[0]
    half = single_node_model("DeformConv2d", "dcn", list(feeds), **attrs)
    model = onnx.load_from_string(half)
    for v in list(model.graph.input) + list(model.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    out = onnx_plugins.session(model.SerializeToString(), ["CUDAExecutionProvider"]).run(
        None, {k: v.astype(np.float16) for k, v in feeds.items()})[0]
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=0.05, atol=0.2)

