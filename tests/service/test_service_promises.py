"""The README's service promises, each pinned so that breaking it turns a test red (fake
backends: these are about scheduling, limits and bookkeeping, not detection). The breakages are
listed in tests/mutants/mutants.py; `make mutants` applies them one by one."""
import asyncio
import re
import threading
import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_support import FakeBackend, encode, live_server
from test_service_http import png_claiming

from service.app import create_app
from service.batcher import Batcher
from service.recent import RecentResults, Record
from service.settings import Settings

IMAGE = np.zeros((8, 8, 3), np.uint8)
BODY = encode(np.full((32, 48, 3), 90, np.uint8))


def fake_result(n: int):
    return {"boxes": np.tile(np.arange(1, 5, dtype=np.float32), (n, 1)),
            "scores": np.linspace(0.9, 0.1, n).astype(np.float32),
            "labels": np.ones(n, np.int64)}


class CountingBackend:
    """Takes `delay` seconds per batch and counts the images and batches it ran."""
    name, device, model_name, classes = "fake", "cpu", "fake", ["tree"]

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.images, self.batches = delay, 0, []
        self.lock = threading.Lock()

    def warmup(self) -> None:
        pass

    def predict(self, images, threshold, limit):
        with self.lock:
            self.images += len(images)
            self.batches.append(len(images))
        time.sleep(self.delay)
        return [fake_result(3) for _ in images]

    # the tile interface the service uses (service.backend.Backend): one tile per image
    def count_tiles(self, height, width):
        return 1

    def plan(self, image):
        return SimpleNamespace(tiles=[image])

    def run_tiles(self, tiles):
        return self.predict(list(tiles), 0.0, 2**31 - 1)

    def merge(self, plan, outputs, score_threshold, max_detections):
        result = outputs[0]
        keep = np.nonzero(result["scores"] >= score_threshold)[0][:max_detections]
        return {k: v[keep] for k, v in result.items()}

    def sampling_points(self, image, x, y, depth=None):
        return [{"layer": "fake", "points": np.array([[x, y]]), "weights": np.ones(1)}]

    def render(self, image, layers, x, y):
        return encode(image)


def wait_ready(client: TestClient) -> None:
    deadline = time.time() + 30
    while client.get("/readyz").status_code != 200:
        assert time.time() < deadline
        time.sleep(0.02)


def post(client, body=BODY, content_type="image/png", **params):
    return client.post("/detect", content=body, headers={"content-type": content_type},
                       params=params)


def metric(text: str, name: str) -> float:
    """The value of one Prometheus sample, e.g. 'dcn_rejected_total{reason="queue_full"}'."""
    match = re.search(r"^" + re.escape(name) + r" ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_stop_runs_every_queued_request_to_a_result():
    predict = CountingBackend(delay=0.02)

    async def main():
        b = Batcher(predict.predict, max_batch_size=2, max_delay_s=0.01, queue_size=16)
        b.start()
        jobs = [await b.submit(IMAGE, 0.0, 10) for _ in range(7)]
        await b.stop()
        return [job.future.result() for job in jobs]  # raises if a job was failed

    results = asyncio.run(main())
    assert predict.images == 7 and [len(r["scores"]) for r in results] == [3] * 7


def test_no_batch_exceeds_max_batch_size():
    backend = FakeBackend(tile=4)  # a 4 x 28 image is 7 tiles

    async def main():
        b = Batcher(backend, max_batch_size=3, max_delay_s=0.05, queue_size=16)
        b.start()
        job = await b.submit(np.zeros((4, 28, 3), np.uint8), 0.0, 10)
        await b.stop()
        return job.future.result()

    assert len(asyncio.run(main())["boxes"]) == 7
    assert [len(batch) for batch in backend.batches] == [3, 3, 1]


def test_partial_batch_closes_at_max_delay_not_later():
    predict = CountingBackend()

    async def main():
        b = Batcher(predict.predict, max_batch_size=8, max_delay_s=0.2, queue_size=16)
        b.start()
        t0 = time.perf_counter()
        job = await b.submit(IMAGE, 0.0, 10)
        await job.future
        waited = time.perf_counter() - t0
        await b.stop()
        return waited

    waited = asyncio.run(main())
    assert 0.18 <= waited < 0.5 and predict.batches == [1]


def test_timed_out_request_gets_504_and_never_runs():
    backend = CountingBackend(delay=1.0)
    app = create_app(Settings(max_batch_size=1, max_delay_ms=0, request_timeout_s=0.4),
                     backend=backend)
    with live_server(app) as url:
        backend.images = 0  # not counting anything before the test
        codes = []

        def send():
            codes.append(httpx.post(url + "/detect", content=BODY, timeout=30,
                                    headers={"content-type": "image/png"}).status_code)

        first = threading.Thread(target=send)
        first.start()  # runs at once, occupies the backend for 1 s
        time.sleep(0.15)
        send()  # queued behind it; times out at 0.4 s while still queued
        first.join()
        time.sleep(1.5)  # the first batch is over: the timed-out job would have run by now
        assert codes == [504, 504] and backend.images == 1


def test_results_store_bounded_by_count_and_bytes_oldest_first():
    def record(size):
        return Record(b"x" * size, 4, 4, fake_result(1))

    by_count = RecentResults(max_items=2, max_bytes=10**6)
    for key in "abc":
        by_count.put(key, record(10))
    assert by_count.get("a") is None and by_count.get("b") and by_count.get("c")
    assert len(by_count) == 2
    by_bytes = RecentResults(max_items=100, max_bytes=25)
    for key in "abc":
        by_bytes.put(key, record(10))
    assert by_bytes.get("a") is None and by_bytes.get("b") and by_bytes.get("c")
    by_bytes.put("huge", record(26))  # larger than the whole store: not kept, evicts nothing
    assert by_bytes.get("huge") is None and by_bytes.get("c")


def test_evicted_result_id_is_404():
    with TestClient(create_app(Settings(recent_results=2), backend=CountingBackend())) as client:
        wait_ready(client)
        ids = [post(client).json()["id"] for _ in range(3)]
        gone = client.get(f"/offsets/{ids[0]}", params={"format": "json"})
        assert gone.status_code == 404 and "expired" in gone.json()["detail"]
        for rid in ids[1:]:
            kept = client.get(f"/offsets/{rid}", params={"format": "json"})
            assert kept.status_code == 200 and kept.json()["id"] == rid


async def asgi_request(app, headers, chunks):
    """Drives the ASGI app with a body sent in `chunks`; returns (status, body, chunks read)."""
    pending, sent = list(chunks), []

    async def receive():
        if not pending:
            await asyncio.sleep(3600)  # a client that sends nothing more
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/detect", "raw_path": b"/detect",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    await asyncio.wait_for(app(scope, receive, send), 10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, len(chunks) - len(pending)


@pytest.mark.parametrize("declared", [False, True])
def test_413_before_the_body_is_read(declared):
    # Content-Length over the limit: nothing read. Chunked: refused at the first chunk past it.
    app = create_app(Settings(max_upload_bytes=10_000), backend=CountingBackend())

    async def main():
        async with app.router.lifespan_context(app):
            while not app.state.ready:
                await asyncio.sleep(0.01)
            headers = [(b"content-type", b"image/png")]
            if declared:
                headers.append((b"content-length", b"64000"))
            return await asgi_request(app, headers, [b"\0" * 1000] * 64)

    status, body, read = asyncio.run(main())
    assert status == 413 and b"exceeds 10000 bytes" in body
    assert read == (0 if declared else 11)


def test_error_statuses_have_json_details_and_retry_after():
    app = create_app(Settings(max_image_pixels=40_000), backend=CountingBackend())
    with TestClient(app) as client:
        wait_ready(client)
        cases = [(post(client, BODY[: len(BODY) // 2]), 400),       # truncated
                 (post(client, b"not an image"), 400),
                 (post(client, BODY, "text/plain"), 415),
                 (post(client, BODY, score_threshold=1.5), 422),
                 (post(client, BODY, max_detections=0), 422),
                 (post(client, encode(np.zeros((201, 200, 3), np.uint8))), 413),
                 # header claims 3000 x 3000: refused before decoding (decoding gives 400)
                 (post(client, png_claiming(3000, 3000)), 413)]
        for response, status in cases:
            assert response.status_code == status, (status, response.text)
            assert response.json()["detail"]
        assert post(client, encode(np.zeros((200, 200, 3), np.uint8))).status_code == 200

    class Broken(CountingBackend):
        def warmup(self):
            raise RuntimeError("weights are corrupt")

    with TestClient(create_app(Settings(), backend=Broken())) as client:
        r = post(client)
        assert r.status_code == 503 and r.headers["retry-after"] and r.json()["detail"]


FAKE = '{model="fake",version="1"}'  # the labels of the one served model's samples


def test_full_queue_503_and_metrics_count_the_traffic():
    backend = CountingBackend(delay=0.3)
    app = create_app(Settings(max_batch_size=4, max_delay_ms=200, queue_size=4),
                     backend=backend)
    with live_server(app) as url:
        base = metric(httpx.get(url + "/metrics").text, "dcn_images_total" + FAKE)
        backend.batches.clear()

        async def burst(n):
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                return await asyncio.gather(*(
                    c.post("/detect", content=BODY, headers={"content-type": "image/png"})
                    for _ in range(n)))

        responses = asyncio.run(burst(16))
        codes = [r.status_code for r in responses]
        text = httpx.get(url + "/metrics").text
    ok, busy = codes.count(200), codes.count(503)
    assert ok + busy == 16 and ok >= 4 and busy >= 1
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)
    assert max(backend.batches) > 1  # batched: a per-batch (not per-image) count would differ
    assert metric(text, "dcn_images_total" + FAKE) - base == ok == sum(backend.batches)
    assert metric(text, 'dcn_rejected_total{reason="queue_full"}') == busy
    assert metric(text, 'dcn_http_requests_total{method="POST",route="/detect",status="200"}') \
        == ok
    assert metric(text, "dcn_batch_size_sum" + FAKE) == ok
    assert metric(text, "dcn_batch_size_count" + FAKE) == len(backend.batches)
