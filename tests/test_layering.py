"""The architecture holds: Python imports point one way (service -> model -> onnx_plugins), no
module imports itself through others, and serving with ONNX Runtime runs without torch."""
import ast
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"onnx_plugins": 0, "model": 1, "service": 2}  # a package may import lower ranks only


def _modules():
    """{module name: path} of every module of the three packages."""
    found = {}
    for package in LAYERS:
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
    return [f"{m} -> {t}" for m, targets in graph.items() for t in targets
            if LAYERS[t.split(".")[0]] > LAYERS[m.split(".")[0]]]


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


def test_the_checker_finds_cycles_and_upward_imports():
    modules = {"model": "", "model.a": "", "model.b": "", "onnx_plugins": "", "service.x": ""}
    graph = {
        "model.a": _imports("model.a", False, "def f():\n    from .b import g\n", modules),
        "model.b": _imports("model.b", False, "from . import a\nimport service.x\n", modules),
        "onnx_plugins": _imports("onnx_plugins", True, "from model import a\n", modules),
        "service.x": set(), "model": set(),
    }
    assert graph["model.a"] == {"model.b"} and graph["model.b"] == {"model.a", "service.x"}
    assert cycles(graph) == ["model.a -> model.b -> model.a"]
    assert sorted(upward_imports(graph)) == ["model.b -> service.x", "onnx_plugins -> model.a"]


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
    from model import data
    from model.inference import load_detector
    from model.runtimes import exported_runtime

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
