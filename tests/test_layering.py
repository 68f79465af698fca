"""The architecture holds: Python imports point one way, down the layers below; no module
imports itself through others; the service reaches the model through one module; and serving with
ONNX Runtime runs without torch."""
import ast
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("onnx_plugins", "model", "service")
# A package may import itself and lower ranks only; equal ranks are independent of each other.
# `model` itself (its __init__ and the command-line modules beside the subpackages) sits above
# every model subpackage. model.inference never imports torch (the ONNX Runtime path).
LAYERS = {"onnx_plugins": 0, "model.ops": 1, "model.inference": 1, "model.detector": 2,
          "model.runtimes": 3, "model.training": 4, "model": 5, "service": 6}
TORCH_FREE = ("model.inference",)
SERVICE_GATE = "service.model_backend"  # the one service module that imports the model


def layer_of(module: str) -> str:
    """The LAYERS key that `module` belongs to (its longest matching package prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise KeyError(module)


def _modules():
    """{module name: path} of every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3]
                    found[rel.replace(os.sep, ".").removesuffix(".__init__")] = rel + ".py"
    return found


def _imports(module: str, is_package: bool, source: str, modules) -> set:
    """Project modules that `module` imports anywhere in `source` (function-level too)."""
    package = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import model.ops.x` -> nearest module
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def _graph():
    modules = _modules()
    graph = {}
    for m, path in modules.items():
        with open(os.path.join(ROOT, path)) as f:
            graph[m] = _imports(m, path.endswith("__init__.py"), f.read(), modules)
    return graph


def upward_imports(graph):
    """Imports of a layer above or beside the importer's own (`a -> b` strings)."""
    found = []
    for m, targets in graph.items():
        own = layer_of(m)
        for t in targets:
            theirs = layer_of(t)
            if theirs != own and LAYERS[theirs] >= LAYERS[own]:
                found.append(f"{m} -> {t}")
    return found


def third_party_imports(source: str) -> set:
    """Top-level names of every module `source` imports (function-level too)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def cycles(graph):
    state, found = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                found.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_imports_point_down_the_layers():
    assert not upward_imports(_graph()), "imports against the layering"


def test_no_import_cycles():
    assert not cycles(_graph())


def test_the_service_imports_the_model_only_through_its_backend_module():
    reaching = sorted(m for m, targets in _graph().items() if m.startswith("service")
                      and m != SERVICE_GATE and any(t.startswith("model") for t in targets))
    assert not reaching, "service modules importing model directly"


def test_tiled_inference_never_imports_torch():
    for m, path in _modules().items():
        if m.startswith(TORCH_FREE):
            with open(os.path.join(ROOT, path)) as f:
                assert not third_party_imports(f.read()) & {"torch", "torchvision"}, m


def test_every_model_package_says_what_it_holds_and_may_import():
    for package in (k for k in LAYERS if k.startswith("model.")):
        path = os.path.join(ROOT, *package.split("."), "__init__.py")
        with open(path) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
        assert doc and "import" in doc.lower(), f"{path}: docstring must say what it may import"


def test_the_checker_finds_cycles_and_upward_imports():
    modules = {"model": "", "model.detector.a": "", "model.detector.b": "", "model.ops.x": "",
               "model.inference.t": "", "onnx_plugins": "", "service.x": ""}
    graph = {
        "model.detector.a": _imports("model.detector.a", False,
                                     "def f():\n    from .b import g\n", modules),
        "model.detector.b": _imports("model.detector.b", False,
                                     "from . import a\nimport service.x\n", modules),
        "model.ops.x": _imports("model.ops.x", False,
                                "from model.detector import a\nfrom model.inference import t\n",
                                modules),
        "onnx_plugins": _imports("onnx_plugins", True, "from model.ops import x\n", modules),
        "model.inference.t": _imports("model.inference.t", False, "import torch\n", modules),
        "service.x": set(), "model": set(),
    }
    assert graph["model.detector.a"] == {"model.detector.b"}
    assert graph["model.detector.b"] == {"model.detector.a", "service.x"}
    assert cycles(graph) == ["model.detector.a -> model.detector.b -> model.detector.a"]
    assert sorted(upward_imports(graph)) == [
        "model.detector.b -> service.x",  # up
        "model.ops.x -> model.detector.a",  # up
        "model.ops.x -> model.inference.t",  # beside: same rank, independent
        "onnx_plugins -> model.ops.x"]
    assert "torch" in third_party_imports("def f():\n    import torch.nn\n")


SERVE_WITHOUT_TORCH = """
import json, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

app = create_app(Settings(backend="onnxruntime", device="cpu", cache_dir=sys.argv[1]))
with TestClient(app) as client:
    import time
    for _ in range(600):
        if client.get("/readyz").status_code == 200:
            break
        time.sleep(0.1)
    with open(sys.argv[2], "rb") as f:
        body = f.read()
    r = client.post("/detect?score_threshold=0.3&max_detections=1000", content=body,
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    result = r.json()
    points = client.get(f"/offsets/{result['id']}?format=json&x=200&y=150")
    assert points.status_code == 200, points.text
    png = client.get(f"/offsets/{result['id']}?x=200&y=150")
    assert png.headers["content-type"] == "image/png"
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print(json.dumps({"backend": result["backend"], "detections": result["detections"],
                  "layers": [len(l["points"]) for l in points.json()["layers"]],
                  "torch_modules": loaded[:5]}))
"""


def test_onnxruntime_serving_imports_no_torch_and_detects_as_eager(tmp_path, runtime_cache):
    from model.runtimes.loading import exported_runtime, load_detector
    from model.training import data

    exported_runtime("onnxruntime", cache_dir=runtime_cache)  # what the service will find
    image = os.path.join(data.deepforest_data_dir(), "SOAP_061.png")
    out = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TORCH, runtime_cache, image],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    assert served["torch_modules"] == [] and served["backend"] == "onnxruntime"
    assert served["layers"] == [9, 81, 729]
    from PIL import Image

    pixels = np.asarray(Image.open(image).convert("RGB"))
    (eager,) = load_detector().predict([pixels], score_threshold=0.3, max_detections=1000)
    boxes = np.array([d["box"] for d in served["detections"]])
    assert len(boxes) == len(eager["boxes"]) > 10
    np.testing.assert_allclose(boxes, eager["boxes"], atol=1.0)
    np.testing.assert_allclose([d["score"] for d in served["detections"]], eager["scores"],
                               atol=1e-3)
