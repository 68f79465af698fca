"""The generated Triton model repository (no Triton binary here): config.pbtxt parses with
Triton's own protobuf schema, matches the ONNX graph, and the model runs in ONNX Runtime with the
op library the config names, giving the eager detector's detections."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from detection_match import assert_same_detections
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from model.detector.zoo import load_model
from model.runtimes.triton import write_repository
from model.training import data

TYPES = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32,
         onnx.TensorProto.UINT8: model_config_pb2.TYPE_UINT8,
         onnx.TensorProto.INT64: model_config_pb2.TYPE_INT64}


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    out = tmp_path_factory.mktemp("model_repository")
    paths = write_repository(str(out), max_batch_size=3, max_detections=200)
    with open(paths["config"]) as f:
        config = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
    return paths, config


def test_config_describes_the_onnx_graph(repository):
    paths, config = repository
    assert config.backend == "onnxruntime" and config.max_batch_size == 3
    assert config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert os.path.basename(os.path.dirname(os.path.dirname(paths["model"]))) == config.name
    graph = onnx.load(paths["model"]).graph
    for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in actual]
        for t, v in zip(declared, actual):
            dims = [d.dim_value if d.HasField("dim_value") else -1
                    for d in v.type.tensor_type.shape.dim]
            assert dims[0] == -1 or dims[0] == 0  # the batch dimension Triton adds
            assert list(t.dims) == dims[1:], t.name
            assert t.data_type == TYPES[v.type.tensor_type.elem_type], t.name
    assert [list(t.dims) for t in config.output] == [[200, 4], [200], [200], [1]]


def test_model_runs_with_the_configured_op_library(repository):
    paths, config = repository
    library = config.model_operations.op_library_filename[0]
    assert os.path.exists(library) and "libdcn_ort" in library
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    session = ort.InferenceSession(paths["model"], options, providers=["CPUExecutionProvider"])
    soap = data.load_split(["SOAP_061"])[0].image
    osbs = data.load_split(["OSBS_029"])[0].image
    detector, _ = load_model()
    for batch in ([soap], [soap, osbs]):  # partial batches (max 3)
        boxes, scores, labels, count = session.run(None, {"images": np.stack(batch)})
        assert boxes.shape == (len(batch), 200, 4) and count.shape == (len(batch), 1)
        for i, image in enumerate(batch):
            with torch.no_grad():
                eager = detector([data.image_tensor(image)])[0]
            n = int(count[i, 0])
            assert n == min(len(eager["scores"]), 200) and n > 0
            np.testing.assert_allclose(boxes[i, :n], eager["boxes"][:n].numpy(), atol=1.0)
            np.testing.assert_allclose(scores[i, :n], eager["scores"][:n].numpy(), atol=1e-3)
            assert (labels[i, :n] == 1).all() and (scores[i, n:] == 0).all()


def test_whole_image_models_are_written_unbatched_from_the_network_input(tmp_path):
    from model.detector import checkpoint
    from model.detector.mmdet_convert import checkpoint_config
    from model.detector.mmdet_faster_rcnn import MMDET_CONFIGS
    from model.inference.mmdet_preprocess import preprocess

    name = "faster-rcnn_r50_fpn_1x_coco"
    torch.manual_seed(0)
    model = MMDET_CONFIGS[name]().eval()
    with torch.no_grad():  # detections above the score threshold
        model.roi_head.bbox_head.fc_cls.weight.mul_(30)
    config = checkpoint_config(name, [str(i) for i in range(80)])
    checkpoint.save(model, config, str(tmp_path / "imported"))
    paths = write_repository(str(tmp_path / "repo"), str(tmp_path / "imported"))
    with open(paths["config"]) as f:
        triton = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
    assert triton.max_batch_size == 0 and not triton.HasField("dynamic_batching")
    assert [(t.name, list(t.dims)) for t in triton.input] == [
        ("input", [1, 3, -1, -1]), ("image_size", [2]), ("box_scale", [2])]
    options = ort.SessionOptions()
    options.register_custom_ops_library(triton.model_operations.op_library_filename[0])
    session = ort.InferenceSession(paths["model"], options, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((3, 48, 64), dtype=np.float32)
    boxes, labels, scores = session.run(None, dict(zip(
        ("input", "image_size", "box_scale"), preprocess(image, config["preprocessing"]))))
    with torch.no_grad():
        [eager] = model([torch.from_numpy(image)])
    assert len(scores) > 0
    assert_same_detections({"boxes": boxes, "labels": labels, "scores": scores},
                           {k: v.numpy() for k, v in eager.items()})
