"""Helpers for the service tests: real photos as upload bytes, a live server in a thread, a fake
tiled backend for scheduling and fault tests."""
import io
import math
import os
import socket
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
import numpy as np
import uvicorn
from PIL import Image


def photo(name: str) -> np.ndarray:
    """A real photo: scikit-image's CC0 samples (astronaut, chelsea, coffee, rocket, motorcycle)
    or a DeepForest aerial image (SOAP_061, OSBS_029)."""
    if name in ("SOAP_061", "OSBS_029"):
        from model.training import data

        return np.asarray(Image.open(os.path.join(data.deepforest_data_dir(), name + ".png"))
                          .convert("RGB"))
    from skimage import data as samples

    image = getattr(samples, name)()
    return image[..., :3] if image.ndim == 3 else image


def encode(image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, fmt,
                                                                              **params)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app, ready_timeout: float = 300.0):
    """Serves `app` with uvicorn on a free port in a thread; yields the base URL once /readyz
    says ready; shuts down gracefully on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + ready_timeout
    try:
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or not thread.is_alive():
                raise RuntimeError("the service did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


class FakeBackend:
    """A stand-in backend (scheduling, fault and fuzz tests: no model). Images are cut into
    `tile` x `tile` tiles without overlap; each tile takes `delay` seconds and "detects" itself,
    so every box lies inside its image. `batches` records each backend call as the (height,
    width) of the image each of its tiles came from."""
    name, device, model_name, classes = "fake", "cpu", "fake", ["tree"]

    def __init__(self, tile: int = 64, delay: float = 0.0) -> None:
        self.tile, self.delay = tile, delay
        self.batches = []

    def count_tiles(self, height: int, width: int) -> int:
        return math.ceil(height / self.tile) * math.ceil(width / self.tile)

    def plan(self, image: np.ndarray):
        h, w = image.shape[:2]
        return SimpleNamespace(tiles=[((h, w), x, y, min(x + self.tile, w), min(y + self.tile, h))
                                      for y in range(0, h, self.tile)
                                      for x in range(0, w, self.tile)])

    def run_tiles(self, tiles):
        self.batches.append([owner for owner, *_ in tiles])
        time.sleep(self.delay * len(tiles))
        return [np.array(box, np.float32) for _, *box in tiles]

    def merge(self, plan, outputs, score_threshold: float, max_detections: int):
        boxes = np.stack(outputs)
        scores = np.linspace(0.9, 0.5, len(boxes)).astype(np.float32)
        keep = np.nonzero(scores >= score_threshold)[0][:max_detections]
        return {"boxes": boxes[keep], "scores": scores[keep],
                "labels": np.ones(len(keep), np.int64)}

    def warmup(self) -> None:
        pass


def wait_ready(client, timeout: float = 10.0) -> None:
    """Polls /readyz of a TestClient (or httpx client) until it says 200."""
    deadline = time.time() + timeout
    while client.get("/readyz").status_code != 200:
        if time.time() > deadline:
            raise RuntimeError("the service did not become ready")
        time.sleep(0.02)


def fake_repository(root, models) -> str:
    """A model repository of empty checkpoints for fake backends: `models` maps a name to
    {version: classes}. Returns its path."""
    import json

    for name, versions in models.items():
        for version, classes in versions.items():
            folder = os.path.join(str(root), name, str(version))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, name + ".json"), "w") as f:
                json.dump({"classes": classes}, f)
            open(os.path.join(folder, name + ".safetensors"), "wb").close()
    return str(root)


class RepositoryFake(FakeBackend):
    """A fake backend for a checkpoint of fake_repository: its classes from the JSON (a JSON
    with "broken" fails to load); `version` from the folder."""

    def __init__(self, checkpoint: str, delay: float = 0.0) -> None:
        import json

        super().__init__(tile=1000, delay=delay)
        with open(checkpoint + ".json") as f:
            config = json.load(f)
        if config.get("broken"):
            raise ValueError("weights do not match the architecture")
        self.classes = config["classes"]
        self.model_name = os.path.basename(checkpoint)
        self.version = int(os.path.basename(os.path.dirname(checkpoint)))
        self.closed = False

    def close(self) -> None:
        self.closed = True


def checkpoint_copy(folder, classes) -> None:
    """A version folder holding the shipped checkpoint renamed to other `classes` (same
    weights): a second real model of different classes."""
    import json
    import shutil

    weights = os.path.join(os.path.dirname(__file__), "..", "..", "model", "weights")
    stem = "dcn_mobilenet_v2_fpn_trees"
    os.makedirs(folder)
    shutil.copy(os.path.join(weights, stem + ".safetensors"), folder)
    with open(os.path.join(weights, stem + ".json")) as f:
        config = json.load(f)
    config["classes"] = classes
    with open(os.path.join(folder, stem + ".json"), "w") as f:
        json.dump(config, f)
