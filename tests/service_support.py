"""Helpers for the service tests: real photos as upload bytes, a live server in a thread."""
import io
import os
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from PIL import Image

from model import data


def photo(name: str) -> np.ndarray:
    """A real photo: scikit-image's CC0 samples (astronaut, chelsea, coffee, rocket, motorcycle)
    or a DeepForest aerial image (SOAP_061, OSBS_029)."""
    if name in ("SOAP_061", "OSBS_029"):
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
