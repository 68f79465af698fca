"""Faults the service survives, each with what it answers: a backend raising mid-batch (500,
the connection stays usable, the next batch runs), a hung backend (504, not ready, recovery; or
exit status 3 for a restart), out of memory (503), SIGTERM with a full queue (every accepted
request answered, exit 0), a corrupt checkpoint (clear error, exit 3), clients that vanish
mid-upload (499, not 500). Fake backends except for the checkpoint."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from service_support import FakeBackend, encode, free_port, live_server, photo, wait_ready

from service.app import create_app
from service.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = encode(photo("coffee")[:64, :64])
WIDE = encode(photo("coffee")[:64, :128])


def post(conn: http.client.HTTPConnection, body: bytes, path: str = "/detect"):
    conn.request("POST", path, body, {"Content-Type": "image/png"})
    r = conn.getresponse()
    return r.status, json.loads(r.read()), r.getheader("connection")


def test_backend_error_is_a_500_on_a_connection_that_stays_usable():
    class Flaky(FakeBackend):
        def run_tiles(self, tiles):
            if tiles[0][0] == (64, 128):
                raise RuntimeError("device lost")
            return super().run_tiles(tiles)

        def count_tiles(self, height, width):
            if (height, width) == (64, 200):
                raise ValueError("a bug outside the backend")
            return super().count_tiles(height, width)

    with live_server(create_app(Settings(), backend=Flaky(tile=1000))) as url:
        conn = http.client.HTTPConnection(url.split("//")[1], timeout=30)
        status, body, _ = post(conn, WIDE)
        assert status == 500 and body["detail"] == "inference failed: RuntimeError"
        assert post(conn, SMALL)[0] == 200  # same socket: the next batch runs, no reset
        status, body, close = post(conn, encode(photo("coffee")[:64, :200]))
        assert status == 500 and body["detail"] == "internal error"
        assert post(conn, SMALL)[0] == 200
        conn.close()
        metrics = httpx.get(url + "/metrics").text
        assert 'route="/detect",status="500"} 2.0' in metrics


class Gated(FakeBackend):
    """Hangs in run_tiles until `gate` is set."""

    def __init__(self) -> None:
        super().__init__(tile=1000)
        self.gate = threading.Event()

    def run_tiles(self, tiles):
        self.gate.wait()
        return super().run_tiles(tiles)


def test_hung_backend_gives_504_and_not_ready_then_recovers():
    backend = Gated()
    settings = Settings(request_timeout_s=0.5, stall_timeout_s=0.3)
    with TestClient(create_app(settings, backend=backend)) as client:
        wait_ready(client)
        headers = {"content-type": "image/png"}
        r = client.post("/detect", content=SMALL, headers=headers)
        assert r.status_code == 504 and "timed out" in r.json()["detail"]
        r = client.get("/readyz")
        assert r.status_code == 503 and "stalled" in r.json()["detail"]
        r = client.post("/detect", content=SMALL, headers=headers)
        assert r.status_code == 503 and "stalled" in r.json()["detail"] and r.headers["retry-after"]
        backend.gate.set()
        wait_ready(client)
        assert client.post("/detect", content=SMALL, headers=headers).status_code == 200


SERVE = """
import sys, time
sys.path.insert(0, "tests/service")
from service_support import FakeBackend
from service.__main__ import main

class Hung(FakeBackend):
    def run_tiles(self, tiles):
        time.sleep(3600)

backend = {backend}
main(sys.argv[1:], backend=backend)
"""


def serve(backend: str, *flags: str):
    """`python -c SERVE` with a fake backend: (process, base URL) once ready."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE.format(backend=backend), "--port",
                             str(port), "--log-level", "warning", *flags], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("the service did not start: " + proc.communicate()[0])
        time.sleep(0.1)


def test_hung_backend_exits_with_status_3_for_a_restart():
    proc, url = serve("Hung(tile=1000)", "--request-timeout-s", "1", "--stall-exit-s", "1.5")
    r = httpx.post(url + "/detect", content=SMALL, headers={"content-type": "image/png"},
                   timeout=30)
    assert r.status_code == 504
    try:
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 3 and "inference hung" in output


def test_out_of_memory_is_a_503_with_retry_after():
    class NoMemory(FakeBackend):
        def run_tiles(self, tiles):
            raise type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")

    with TestClient(create_app(Settings(), backend=NoMemory(tile=1000))) as client:
        wait_ready(client)
        r = client.post("/detect", content=SMALL, headers={"content-type": "image/png"})
        assert r.status_code == 503 and "out of memory" in r.json()["detail"]
        assert r.headers["retry-after"]


def queue_depth(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith('dcn_queue_depth{model="fake",version="1"} ')))


def test_sigterm_with_a_full_queue_answers_every_accepted_request_then_exits_0():
    proc, url = serve("FakeBackend(tile=1000, delay=0.25)", "--max-batch-size", "1",
                      "--queue-size", "8")
    statuses = []

    def client():
        conn = http.client.HTTPConnection(url.split("//")[1], timeout=60)
        statuses.append(post(conn, SMALL)[0])

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while queue_depth(url) < 6 and time.time() < deadline:  # one running, the rest queued
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert statuses == [200] * 8, statuses
    assert proc.returncode == 0, output


def test_corrupt_checkpoint_is_a_clear_error_and_exit_3(tmp_path):
    from model.detector.checkpoint import DEFAULT_CHECKPOINT

    stem = str(tmp_path / "broken")
    shutil.copy(DEFAULT_CHECKPOINT + ".json", stem + ".json")
    with open(DEFAULT_CHECKPOINT + ".safetensors", "rb") as f:
        data = f.read()
    with open(stem + ".safetensors", "wb") as f:
        f.write(data[: len(data) // 3])  # truncated, as by an interrupted copy
    out = subprocess.run([sys.executable, "-m", "service", "--checkpoint", stem, "--port",
                          str(free_port()), "--device", "cpu"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 3, out.stderr
    assert "broken.safetensors is not a valid safetensors file" in out.stderr
    assert "exiting: model failed to load" in out.stderr


@pytest.mark.parametrize("multipart", [False, True])
def test_client_that_vanishes_mid_upload_is_a_499_not_a_500(multipart):
    with live_server(create_app(Settings(), backend=FakeBackend(tile=1000))) as url:
        host, port = url.split("//")[1].split(":")
        if multipart:
            head = b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"" \
                   b"\r\nContent-Type: image/png\r\n\r\n"
            content_type = b"multipart/form-data; boundary=XyZ"
        else:
            head, content_type = b"", b"image/png"
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
                      + b"\r\nContent-Length: 100000\r\n\r\n" + head + SMALL[:100])
            time.sleep(0.3)
        time.sleep(0.5)
        metrics = httpx.get(url + "/metrics").text
    assert 'route="/detect",status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics and 'status="400"' not in metrics
