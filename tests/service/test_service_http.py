"""The HTTP service on the shipped model (default settings: the auto backend, ONNX Runtime on
this CPU), served by uvicorn: /detect, /offsets,
health and metrics, bad input and overload. Real photos only."""
import asyncio
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from service_support import encode, live_server, photo

from service.app import create_app
from service.images import decode
from service.settings import Settings

LIMIT = 3 * 2**20


@pytest.fixture(scope="module")
def url(runtime_cache):
    settings = Settings(max_batch_size=4, max_delay_ms=20, queue_size=8, max_upload_bytes=LIMIT,
                        max_image_pixels=20_000_000, request_timeout_s=120,
                        cache_dir=runtime_cache)
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def soap():
    return photo("SOAP_061")


def detect(client, body: bytes, content_type="image/png", **params):
    return client.post("/detect", content=body, headers={"content-type": content_type},
                       params=params)


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    # the default backend "auto" is ONNX Runtime with the dcn op library on a CPU
    assert ready["status"] == "ready" and ready["backend"] == "onnxruntime"
    assert ready["model"] == "dcn_mobilenet_v2_fpn_trees"


def test_detect_raw_body_and_multipart_agree(client, soap):
    png = encode(soap)
    raw = detect(client, png, score_threshold=0.2)
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert (body["width"], body["height"]) == (400, 400) and body["model"]
    assert len(body["detections"]) > 5
    for d in body["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 400
        assert d["score"] >= 0.2 and d["label"] == "tree" and d["class_id"] == 1
    assert set(body["timing_ms"]) == {"queue", "inference", "total"}
    form = client.post("/detect", files={"image": ("soap.png", png, "image/png")},
                       params={"score_threshold": 0.2})
    assert form.status_code == 200
    assert [d["box"] for d in form.json()["detections"]] == [d["box"] for d in body["detections"]]
    top = detect(client, png, score_threshold=0.0, max_detections=3).json()["detections"]
    assert [d["score"] for d in top] == [d["score"] for d in body["detections"][:3]]


def test_exif_orientation_is_applied(client, soap):
    # Pixels stored rotated, with the EXIF tag that rotates them back: same detections.
    upright = detect(client, encode(soap), score_threshold=0.2).json()
    stored = Image.fromarray(soap).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = detect(client, encode(stored, "PNG", exif=exif), score_threshold=0.2).json()
    assert (rotated["width"], rotated["height"]) == (upright["width"], upright["height"])
    assert [d["box"] for d in rotated["detections"]] == [d["box"] for d in upright["detections"]]


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
def test_formats_and_modes_are_converted(client, name):
    image = photo(name)
    h, w = image.shape[:2]
    variants = [(encode(image, "JPEG", quality=90), "image/jpeg"),
                (encode(image, "WEBP"), "image/webp"),
                (encode(image, "BMP"), "image/bmp"),
                (encode(image, "TIFF"), "image/tiff"),
                (encode(Image.fromarray(image).convert("L")), "image/png"),
                (encode(Image.fromarray(image).convert("RGBA")), "image/png"),
                (encode(Image.fromarray(image).convert("P")), "image/png")]
    for body, content_type in variants:
        r = detect(client, body, content_type)
        assert r.status_code == 200, (content_type, r.text)
        assert (r.json()["width"], r.json()["height"]) == (w, h)


def test_sixteen_bit_images_are_scaled_to_eight_bits():
    gray = Image.fromarray(photo("chelsea")).convert("L")
    wide = np.asarray(gray).astype(np.uint16) * 257
    decoded = decode(encode(Image.fromarray(wide)), 10**8)
    assert decoded.dtype == np.uint8 and decoded.shape == (*wide.shape, 3)
    np.testing.assert_array_equal(decoded[..., 0], np.asarray(gray))


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_bad_input_gets_clear_json_errors(client, soap):
    jpeg = encode(soap, "JPEG")
    cases = [
        (detect(client, jpeg[: len(jpeg) // 2], "image/jpeg"), 400),  # truncated
        (detect(client, b"definitely not an image", "image/png"), 400),
        (detect(client, b"", "image/png"), 400),
        (detect(client, jpeg, "text/plain"), 415),
        (client.post("/detect", content=jpeg), 415),  # no content type
        (client.post("/detect", files={"photo": ("a.jpg", jpeg, "image/jpeg")}), 422),
        (detect(client, jpeg, "image/jpeg", score_threshold=1.5), 422),
        (detect(client, jpeg, "image/jpeg", max_detections=0), 422),
        (detect(client, jpeg, "image/jpeg", score_threshold="high"), 422),
        (detect(client, png_claiming(50000, 50000)), 413),  # decompression bomb, 200 bytes
        (detect(client, b"\0" * (LIMIT + 1), "image/png"), 413),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_streamed_body_over_the_limit_is_refused_early(client):
    sent = []

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(64):
            sent.append(1)
            yield b"\0" * 2**20

    r = client.post("/detect", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]


def test_offsets_view(client, soap):
    result = detect(client, encode(soap), score_threshold=0.2).json()
    rid = result["id"]
    png = client.get(f"/offsets/{rid}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (400, 400)
    points = client.get(f"/offsets/{rid}", params={"format": "json"}).json()
    assert [len(layer["points"]) for layer in points["layers"]] == [9, 81, 729]
    x1, y1, x2, y2 = result["detections"][0]["box"]  # default point: best detection's centre
    assert (points["x"], points["y"]) == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2), abs=0.01)
    one = client.get(f"/offsets/{rid}", params={"format": "json", "layer": 2, "x": 100,
                                                "y": 50}).json()
    assert [layer["index"] for layer in one["layers"]] == [2] and len(one["layers"][0]["points"]) == 729
    two = client.get(f"/offsets/{rid}", params={"format": "json", "depth": 2}).json()
    assert [len(layer["points"]) for layer in two["layers"]] == [9, 81]
    deep = client.get(f"/offsets/{rid}", params={"depth": 4})
    assert deep.status_code == 422 and "has 3 deformable layers" in deep.json()["detail"]
    for params, status in [({"layer": 3}, 422), ({"x": 10}, 422), ({"x": 500, "y": 5}, 422),
                           ({"format": "gif"}, 422), ({"depth": 0}, 422)]:
        r = client.get(f"/offsets/{rid}", params=params)
        assert r.status_code == status and r.json()["detail"]
    assert client.get("/offsets/0123456789abcdef").status_code == 404


def test_metrics_count_requests_batches_and_queue(client, soap):
    detect(client, encode(soap))
    text = client.get("/metrics").text
    assert 'dcn_http_requests_total{method="POST",route="/detect",status="200"}' in text
    assert "dcn_batch_size_bucket" in text and "dcn_queue_depth" in text
    assert "dcn_inference_seconds_count" in text and 'dcn_http_request_seconds_bucket' in text


def test_burst_against_a_small_queue_gets_only_200_and_503(url, client, soap):
    body = encode(soap[:200, :200])

    async def burst():
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
            return await asyncio.gather(*(
                c.post("/detect", content=body, headers={"content-type": "image/png"})
                for _ in range(300)))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, sorted(set(codes))
    assert codes.count(200) >= 8 and codes.count(503) > 0
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)
    assert client.get("/healthz").status_code == 200
    assert detect(client, body).status_code == 200  # healthy afterwards


def test_work_is_admitted_by_tile_count(client):
    from upload_fuzz import known_cases

    named = dict((name, body) for name, body, _ in known_cases())
    for name in ("png-1x200000-grey", "jpeg-sof-1x65000"):  # 667 and 217 tiles, ~100 bytes
        r = detect(client, named[name], "image/png")
        assert r.status_code == 413 and "tiles" in r.json()["detail"], r.text
    assert "the limit is 64 (max_tiles)" in r.json()["detail"]


def test_fuzzed_uploads_against_the_shipped_model(url):
    from upload_fuzz import cases, seeds, send_all

    host, port = url.split("//")[1].split(":")
    photos = [(name, body) for name, body in seeds(size=120) if "-RGB." in name]
    tally = send_all(host, int(port), cases(seed=5, n=24, photos=photos))
    print(f"\nfuzz on the shipped model: {tally.summary()}")
    assert not tally.broken, "\n".join(tally.broken)
    assert tally.statuses[200] > 0
