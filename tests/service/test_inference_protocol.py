"""The Open Inference Protocol, driven with stock tritonclient (http and grpc) against a running
server with two real models of different classes in its repository."""
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from service_support import checkpoint_copy, encode, free_port, live_server, photo
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.settings import Settings


def key():
    """Fresh headers each call: tritonclient.http adds its own to the dict it is given."""
    return {"authorization": "Bearer infer-key"}


def admin():
    return {"authorization": "Bearer admin-key"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    checkpoint_copy(root / "trees" / "1", ["tree"])
    checkpoint_copy(root / "crowns" / "3", ["crown"])
    grpc_port = free_port()
    settings = Settings(model_repository=str(root), default_model="trees", backend="torch",
                        device="cpu", grpc_port=grpc_port, api_keys="infer-key",
                        admin_keys="admin-key", request_timeout_s=120)
    with live_server(create_app(settings)) as url:
        yield (thttp.InferenceServerClient(url[len("http://"):], network_timeout=120),
               tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}"), url)


@pytest.fixture(scope="module")
def image():
    return photo("SOAP_061")[:300, :300]


def image_input(module, image):
    data = np.array([encode(image)], np.object_)
    tensor = module.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def test_health_and_metadata_over_http(server):
    http, _, _ = server
    assert http.is_server_live() and http.is_server_ready()
    assert "binary_tensor_data" in http.get_server_metadata(headers=key())["extensions"]
    meta = http.get_model_metadata("crowns", headers=key())
    assert meta["versions"] == ["3"] and meta["platform"] == "dcnserve_torch"
    assert [i["name"] for i in meta["inputs"]] == ["IMAGE", "PIXELS"]
    assert http.is_model_ready("trees", headers=key())
    assert http.is_model_ready("crowns", "3", headers=key())
    assert not http.is_model_ready("crowns", "2", headers=key())


def test_binary_and_json_tensors_give_the_same_detections_and_each_models_classes(server,
                                                                                  image):
    http, _, _ = server
    binary = http.infer("trees", [image_input(thttp, image)], headers=key(),
                        parameters={"score_threshold": 0.2})
    pixels = thttp.InferInput("PIXELS", list(image.shape), "UINT8")
    pixels.set_data_from_numpy(image, binary_data=False)
    outputs = [thttp.InferRequestedOutput(n, binary_data=False)
               for n in ("BOXES", "SCORES", "CLASS_NAMES")]
    as_json = http.infer("crowns", [pixels], outputs=outputs, headers=key(),
                         parameters={"score_threshold": 0.2})
    assert len(binary.as_numpy("SCORES")) > 0
    np.testing.assert_allclose(binary.as_numpy("BOXES"), as_json.as_numpy("BOXES"), atol=0.05)
    assert set(binary.as_numpy("CLASS_NAMES")) == {b"tree"}
    assert set(as_json.as_numpy("CLASS_NAMES")) == {"crown"}  # JSON BYTES come back as str
    assert as_json.get_response()["model_version"] == "3"
    assert binary.as_numpy("NUM_DETECTIONS").tolist() == [len(binary.as_numpy("SCORES"))]


def test_a_batch_of_pixels_pads_its_outputs_and_counts_each_image(server, image):
    http, _, _ = server
    batch = np.stack([image, image[::-1]])
    pixels = thttp.InferInput("PIXELS", list(batch.shape), "UINT8")
    pixels.set_data_from_numpy(batch)
    result = http.infer("trees", [pixels], headers=key(), parameters={"max_detections": 5})
    counts = result.as_numpy("NUM_DETECTIONS")
    assert counts.shape == (2,) and result.as_numpy("BOXES").shape == (2, counts.max(), 4)
    assert counts.max() <= 5


def test_errors_over_http_are_the_protocols(server, image):
    http, _, _ = server
    with pytest.raises(InferenceServerException, match="loaded models: crowns, trees"):
        http.infer("pines", [image_input(thttp, image)], headers=key())
    wrong = thttp.InferInput("PIXELS", [4, 3], "UINT8")
    wrong.set_data_from_numpy(np.zeros((4, 3), np.uint8))
    with pytest.raises(InferenceServerException, match=r"\[400\].*\[H, W, 3\]"):
        http.infer("trees", [wrong], headers=key())
    with pytest.raises(InferenceServerException, match=r"\[401\] missing key"):
        http.infer("trees", [image_input(thttp, image)])
    with pytest.raises(InferenceServerException, match=r"\[400\].*score_threshold"):
        http.infer("trees", [image_input(thttp, image)], headers=key(),
                   parameters={"score_threshold": 3})


def test_grpc_metadata_readiness_and_infer_match_http(server, image):
    http, grpc, _ = server
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert grpc.is_model_ready("crowns") and not grpc.is_model_ready("pines")
    meta = grpc.get_model_metadata("trees", headers=key(), as_json=True)
    assert meta["name"] == "trees" and [o["name"] for o in meta["outputs"]][0] == "BOXES"
    over_grpc = grpc.infer("crowns", [image_input(tgrpc, image)], headers=key())
    over_http = http.infer("crowns", [image_input(thttp, image)], headers=key())
    np.testing.assert_allclose(over_grpc.as_numpy("BOXES"), over_http.as_numpy("BOXES"))
    assert set(over_grpc.as_numpy("CLASS_NAMES")) <= {b"crown"}
    pixels = tgrpc.InferInput("PIXELS", list(image.shape), "UINT8")
    pixels.set_data_from_numpy(image)
    as_pixels = grpc.infer("crowns", [pixels], headers=key())
    np.testing.assert_allclose(as_pixels.as_numpy("BOXES"), over_grpc.as_numpy("BOXES"),
                               atol=0.05)


def test_grpc_errors_are_status_codes(server, image):
    _, grpc, _ = server
    cases = [(("pines", key()), "StatusCode.NOT_FOUND"),
             (("trees", {}), "StatusCode.UNAUTHENTICATED"),
             (("trees", {"authorization": "Bearer nope"}), "StatusCode.UNAUTHENTICATED")]
    for (model, headers), code in cases:
        with pytest.raises(InferenceServerException) as error:
            grpc.infer(model, [image_input(tgrpc, image)], headers=headers)
        assert error.value.status() == code
    bad = tgrpc.InferInput("SOUND", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"x"], np.object_))
    with pytest.raises(InferenceServerException) as error:
        grpc.infer("trees", [bad], headers=key())
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_grpc_repository_management_needs_the_admin_key(server):
    _, grpc, _ = server
    with pytest.raises(InferenceServerException) as error:
        grpc.unload_model("crowns", headers=key())
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    index = grpc.get_model_repository_index(headers=admin(), as_json=True)["models"]
    assert {(m["name"], m["state"]) for m in index} == {("crowns", "READY"), ("trees", "READY")}
