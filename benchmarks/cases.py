"""Benchmark cases shared by the scripts: the op-core shapes and ONNX DeformConv models."""
from onnx import TensorProto, helper

# (N, C_in, C_out, H, W, k), stride 1, padding 1
SHAPES = [(1, 64, 64, 64, 64, 3), (1, 256, 256, 32, 32, 3), (4, 128, 128, 48, 48, 3)]


def deform_conv_model(shape, op="DeformConv", domain=""):
    """Serialized one-node model: ONNX DeformConv (default) or dcn::DeformConv2d, with bias."""
    n, c, co, h, w, k = shape
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f, [n, c, h, w]),
              helper.make_tensor_value_info("W", f, [co, c, k, k]),
              helper.make_tensor_value_info("offset", f, [n, 2 * k * k, h, w]),
              helper.make_tensor_value_info("B", f, [co])]
    node = helper.make_node(op, ["X", "W", "offset", "B"], ["Y"], domain=domain,
                            kernel_shape=[k, k], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], op, inputs, [helper.make_tensor_value_info("Y", f, None)])
    opsets = [helper.make_opsetid("", 19)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    # IR 10: what every ONNX Runtime here reads (onnx writes its newest by default).
    return helper.make_model(graph, ir_version=10, opset_imports=opsets).SerializeToString()
