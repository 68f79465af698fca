"""The dynamic batcher, settings and the HTTP layer's independence from torch (fake backends:
these are about scheduling, not detection)."""
import asyncio
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from service_support import FakeBackend

from service.batcher import Batcher, QueueFull
from service.settings import Settings, parse_args


def fake_result(n: int):
    scores = np.linspace(0.9, 0.1, n).astype(np.float32)
    return {"boxes": np.tile(np.arange(4, dtype=np.float32), (n, 1)), "scores": scores,
            "labels": np.ones(n, np.int64)}


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls, self.delay = [], delay

    def __call__(self, images, threshold, limit):
        self.calls.append((len(images), threshold, limit))
        time.sleep(self.delay)
        return [fake_result(9) for _ in images]


def run(coro):
    return asyncio.run(coro)


def test_full_batch_runs_at_once_and_each_request_gets_its_own_filtering():
    async def main():
        predict = Recorder()
        b = Batcher(predict, max_batch_size=4, max_delay_s=10.0, queue_size=16)
        b.start()
        jobs = [await b.submit(np.zeros((4, 4, 3), np.uint8), thr, md)
                for thr, md in ((0.5, 100), (0.0, 2), (0.85, 100), (0.0, 100))]
        t0 = time.perf_counter()
        results = [await asyncio.wait_for(j.future, 5) for j in jobs]
        assert time.perf_counter() - t0 < 5  # did not wait for the 10 s delay
        await b.stop()
        return predict.calls, results

    calls, results = run(main())
    assert [c[0] for c in calls] == [4]  # one backend call for the four requests
    assert [len(r["scores"]) for r in results] == [5, 2, 1, 9]
    assert (results[0]["scores"] >= 0.5).all()


def test_partial_batch_closes_after_max_delay():
    async def main():
        predict = Recorder()
        b = Batcher(predict, max_batch_size=8, max_delay_s=0.15, queue_size=16)
        b.start()
        t0 = time.perf_counter()
        jobs = [await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10) for _ in range(3)]
        await asyncio.gather(*(j.future for j in jobs))
        waited = time.perf_counter() - t0
        await b.stop()
        return predict.calls, waited

    calls, waited = run(main())
    assert [c[0] for c in calls] == [3]
    assert 0.1 <= waited < 2.0


def test_abandoned_requests_are_dropped_and_full_queue_refuses():
    async def main():
        predict = Recorder(delay=0.3)
        b = Batcher(predict, max_batch_size=2, max_delay_s=0.0, queue_size=3)
        b.start()
        first = await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10)
        await asyncio.sleep(0.05)  # first batch is running
        queued = [await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10) for _ in range(3)]
        with pytest.raises(QueueFull):
            await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10)
        queued[0].future.cancel()  # e.g. the client disconnected
        await asyncio.gather(first.future, queued[1].future, queued[2].future)
        await b.stop()
        return predict.calls

    calls = run(main())
    assert [c[0] for c in calls] == [1, 2]  # the cancelled request never reached the backend


def test_stop_finishes_queued_requests_and_backend_errors_reach_callers():
    async def main():
        b = Batcher(Recorder(delay=0.05), max_batch_size=2, max_delay_s=0.01, queue_size=16)
        b.start()
        jobs = [await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10) for _ in range(7)]
        await b.stop()  # graceful: drains the queue
        assert all(j.future.done() and not j.future.cancelled() for j in jobs)
        with pytest.raises(QueueFull, match="shutting down"):
            await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10)

        def broken(images, threshold, limit):
            raise RuntimeError("device lost")

        b = Batcher(broken, max_batch_size=2, max_delay_s=0.0, queue_size=4)
        b.start()
        job = await b.submit(np.zeros((4, 4, 3), np.uint8), 0.0, 10)
        with pytest.raises(RuntimeError, match="device lost"):
            await job.future
        await b.stop()

    run(main())


def test_deploy_files_set_only_real_settings():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fields = {"DCN_" + name.upper() for name in Settings.model_fields}
    with open(os.path.join(root, "deploy", "dcnserve.env")) as f:
        env = set(re.findall(r"^#? ?(DCN_[A-Z_]+)=", f.read(), re.M))
    with open(os.path.join(root, "deploy", "k8s", "configmap.yaml")) as f:
        configmap = set(re.findall(r"^\s+(DCN_[A-Z_]+):", f.read(), re.M))
    assert env == fields  # the env file documents every setting
    assert configmap and configmap <= fields


def test_settings_from_environment_and_flags(monkeypatch):
    monkeypatch.setenv("DCN_MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("DCN_BACKEND", "onnxruntime")
    s = parse_args(["--port", "9001", "--backend", "torchscript"])
    assert (s.max_batch_size, s.port, s.backend) == (3, 9001, "torchscript")
    assert Settings().checkpoint is None and Settings().max_delay_ms == 10.0
    monkeypatch.setenv("DCN_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings()
    with pytest.raises(ValueError, match="backend"):
        parse_args(["--backend", "tensorrt"])
    monkeypatch.setenv("DCN_MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("DCN_TTA", "4")
    assert Settings().tta == 4 and parse_args(["--tta", "8"]).tta == 8
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        parse_args(["--tta", "3"])


def test_http_layer_does_not_import_torch():
    code = ("import sys; from service.app import create_app; create_app(); "
            "import service.routes.detect, service.routes.offsets; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


class BrokenWeights(FakeBackend):
    def warmup(self) -> None:
        raise RuntimeError("weights are corrupt")


def test_timeout_gives_504_and_failed_load_is_reported_by_readyz():
    from fastapi.testclient import TestClient
    from service_support import encode, photo

    from service.app import create_app

    body = encode(photo("coffee"))
    app = create_app(Settings(request_timeout_s=0.3), backend=FakeBackend(tile=1000, delay=1.0))
    with TestClient(app) as client:
        for _ in range(50):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        r = client.post("/detect", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 504 and "timed out" in r.json()["detail"]
    app = create_app(Settings(), backend=BrokenWeights())
    with TestClient(app) as client:
        time.sleep(0.3)
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and "weights are corrupt" in r.json()["detail"]
        r = client.post("/detect", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 503 and r.headers["retry-after"]


def test_client_that_disconnects_is_dropped_from_its_batch():
    import socket
    import threading
    import urllib.parse

    import httpx
    from service_support import encode, live_server, photo

    from service.app import create_app

    backend = FakeBackend(tile=1000, delay=1.5)
    body = encode(photo("coffee")[:64, :64])
    app = create_app(Settings(max_batch_size=1, max_delay_ms=0), backend=backend)
    with live_server(app) as url:
        busy = threading.Thread(target=lambda: httpx.post(
            url + "/detect", content=body, headers={"content-type": "image/png"}, timeout=30))
        busy.start()  # occupies the backend for 1.5 s
        time.sleep(0.3)
        host = urllib.parse.urlparse(url)
        with socket.create_connection((host.hostname, host.port)) as s:  # queued behind it ...
            s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.3)
        # ... and gone before its turn: its job is cancelled, never run.
        busy.join()
        time.sleep(2.0)
        assert len(backend.batches) == 1
        r = httpx.post(url + "/detect", content=body, headers={"content-type": "image/png"},
                       timeout=30)
        assert r.status_code == 200 and len(backend.batches) == 2
