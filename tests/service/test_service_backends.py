"""The three backends (torch, TorchScript, ONNX Runtime with libdcn_ort.so) serve the same
detections and the same offset view on real photos."""
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_support import encode, photo

from service.app import create_app
from service.settings import Settings

PHOTOS = ["SOAP_061", "OSBS_029", "chelsea", "rocket"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    bodies = {name: encode(photo(name)) for name in PHOTOS}
    out = {}
    for backend in ("torch", "torchscript", "onnxruntime"):
        app = create_app(Settings(backend=backend, cache_dir=cache, request_timeout_s=300))
        with TestClient(app) as client:
            deadline = time.time() + 300
            while client.get("/readyz").status_code != 200:
                assert time.time() < deadline, client.get("/readyz").json()
                time.sleep(0.2)
            assert client.get("/readyz").json()["backend"] == backend
            results = {}
            for name, body in bodies.items():
                r = client.post("/detect", content=body, headers={"content-type": "image/png"},
                                params={"score_threshold": 0.1, "max_detections": 1000})
                assert r.status_code == 200, r.text
                detections = r.json()["detections"]
                view = client.get(f"/offsets/{r.json()['id']}",
                                  params={"format": "json", "x": 120, "y": 140}).json()
                png = client.get(f"/offsets/{r.json()['id']}")
                assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
                results[name] = (detections, view)
            out[backend] = results
    return out


def unmatched(ours, reference):
    """Detections of `ours` with no counterpart in `reference` (box within 1 px, score within
    1e-3)."""
    boxes = np.array([d["box"] for d in reference]).reshape(-1, 4)
    scores = np.array([d["score"] for d in reference])
    return [d for d in ours
            if not ((np.abs(boxes - d["box"]).max(1) <= 1.0)
                    & (np.abs(scores - d["score"]) <= 1e-3)).any()]


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_backends_agree_with_torch(served, backend):
    # TorchScript runs the same kernels: identical. ONNX Runtime computes in a different order
    # (1e-5 differences), so an NMS decision right at an IoU threshold (RPN, box head or tile
    # merge) may flip and swap a weak box for its neighbour: at most 1 in 10 detections may lack
    # a partner, and the five best detections must all match.
    total = 0
    for name in PHOTOS:
        ours, reference = served[backend][name][0], served["torch"][name][0]
        total += len(reference)
        assert not unmatched(ours[:5], reference) and not unmatched(reference[:5], ours), name
        allowed = 0 if backend == "torchscript" else max(2, len(reference) // 10)
        assert abs(len(ours) - len(reference)) <= allowed, name
        assert len(unmatched(ours, reference)) <= allowed, name
        assert len(unmatched(reference, ours)) <= allowed, name
    assert total > 20


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_offset_view_works_on_every_backend(served, backend):
    for name in PHOTOS:
        ours, reference = served[backend][name][1], served["torch"][name][1]
        assert [len(l["points"]) for l in ours["layers"]] == [9, 81, 729]
        for a, b in zip(ours["layers"], reference["layers"]):
            np.testing.assert_allclose(a["points"], b["points"], atol=0.05, err_msg=name)
            np.testing.assert_allclose(a["weights"], b["weights"], atol=1e-3, err_msg=name)


def test_tile_count_is_known_before_planning_and_the_steps_equal_predict():
    from service.model_backend import ModelBackend

    backend = ModelBackend("torch", None, "cpu", tta=2)
    detector = backend.detector
    for height, width in [(1, 1), (400, 400), (401, 400), (700, 1249), (1, 5000)]:
        plan = detector.plan([np.zeros((height, width, 3), np.uint8)], tta=2)
        assert backend.count_tiles(height, width) == len(plan.tiles), (height, width)
    backend.tta = 1
    wide = photo("SOAP_061")[:200, :]
    wide = np.concatenate([wide, wide[:, :200]], 1)  # 200 x 600: 2 tiles
    plan = backend.plan(wide)
    outputs = backend.run_tiles(plan.tiles[:1]) + backend.run_tiles(plan.tiles[1:])
    stepped = backend.merge(plan, outputs, 0.2, 100)
    whole = backend.predict([wide], 0.2, 100)[0]
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_allclose(stepped[key], whole[key], rtol=1e-4, atol=1e-3)


def test_auto_backend_picks_onnxruntime_on_the_cpu_and_falls_back_to_torch(monkeypatch,
                                                                            runtime_cache):
    import onnx_plugins
    from model.runtimes import loading as runtimes

    assert Settings().backend == "auto"
    assert runtimes.auto_kind("cpu") == "onnxruntime"  # the measured fastest on a CPU
    assert runtimes.auto_kind("cuda") == "torch"  # unranked on a GPU: the CUDA-checked path
    detector = runtimes.load_runtime("auto", cache_dir=runtime_cache)
    assert detector.runtime.kind == "onnxruntime"
    monkeypatch.setattr(onnx_plugins, "has_library", lambda cuda=False: False)
    assert runtimes.auto_kind("cpu") == "torch"  # no op library built: eager, not a failure
    with pytest.raises(ValueError, match="unknown device"):
        runtimes.auto_kind("tpu")
    with pytest.raises(ValueError, match="auto, torch, torchscript, onnxruntime"):
        runtimes.load_runtime("tensorrt")


def test_onnxruntime_gpu_without_a_gpu_runs_on_the_cpu(monkeypatch):
    """onnxruntime-gpu lists CUDAExecutionProvider with no GPU present (the GPU image on a CPU
    host): the service then runs, and says it runs, on the CPU."""
    import onnxruntime as ort

    import onnx_plugins
    from model.runtimes import loading as runtimes

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnx_plugins, "has_library", lambda cuda=False: True)
    monkeypatch.setattr(runtimes, "_driver_sees_a_gpu", lambda: False)
    assert runtimes.resolve_device("onnxruntime", "auto") == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        runtimes.resolve_device("onnxruntime", "cuda")
    monkeypatch.setattr(runtimes, "_driver_sees_a_gpu", lambda: True)
    assert runtimes.resolve_device("onnxruntime", "auto") == "cuda"
