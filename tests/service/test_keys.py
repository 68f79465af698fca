"""API keys: inference and admin keys, Bearer (or Basic for the page), constant-time
comparison, 401 with WWW-Authenticate, open health routes, CORS off by default."""
import base64
import hmac
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_support import FakeBackend, encode, wait_ready

from service import keys as keys_module
from service.app import create_app
from service.keys import KeyRing, read_keys
from service.settings import Settings

BODY = encode(np.full((32, 48, 3), 90, np.uint8))
PNG = {"content-type": "image/png"}


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed():
    app = create_app(Settings(api_keys="k1,k2", admin_keys="root"), backend=FakeBackend())
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def test_without_keys_inference_is_open_and_the_log_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="dcnserve"):
        with TestClient(create_app(Settings(), backend=FakeBackend())) as client:
            wait_ready(client)
            assert client.post("/detect", content=BODY, headers=PNG).status_code == 200
            assert client.get("/models").status_code == 200
    assert "running without keys" in caplog.text


def test_inference_needs_a_key_and_401_says_how(keyed):
    r = keyed.post("/detect", content=BODY, headers=PNG)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer realm=")
    assert "missing key" in r.json()["detail"]
    r = keyed.post("/detect", content=BODY, headers={**PNG, **bearer("k3")})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    for key in ("k1", "k2", "root"):  # an admin key is an inference key too
        assert keyed.post("/detect", content=BODY, headers={**PNG, **bearer(key)}) \
            .status_code == 200
    assert keyed.get("/models").status_code == 401
    assert keyed.get("/v2/models/fake", headers=bearer("k1")).status_code == 200
    r = keyed.get("/v2/models/fake")
    assert r.status_code == 401 and "error" in r.json() and r.headers["www-authenticate"]


def test_health_routes_stay_open_with_keys(keyed):
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert keyed.get(path).status_code == 200, path


def test_offsets_and_web_page_need_a_key(keyed):
    r = keyed.post("/detect", content=BODY, headers={**PNG, **bearer("k1")})
    result = r.json()["id"]
    assert keyed.get(f"/offsets/{result}").status_code == 401
    assert keyed.get(f"/offsets/{result}", headers=bearer("k1")).status_code != 401
    r = keyed.get("/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic realm=")
    basic = base64.b64encode(b"anyone:k2").decode()
    assert keyed.get("/", headers={"Authorization": "Basic " + basic}).status_code == 200


def test_management_needs_an_admin_key(keyed):
    assert keyed.post("/v2/repository/index").status_code == 401
    r = keyed.post("/v2/repository/index", headers=bearer("k1"))
    assert r.status_code == 401 and "invalid admin key" in r.json()["error"]
    index = keyed.post("/v2/repository/index", headers=bearer("root")).json()
    assert index == [{"name": "fake", "version": "1", "state": "READY", "reason": ""}]


def test_management_is_off_without_an_admin_key():
    with TestClient(create_app(Settings(api_keys="k1"), backend=FakeBackend())) as client:
        wait_ready(client)
        r = client.post("/v2/repository/models/fake/unload", headers=bearer("k1"))
        assert r.status_code == 403 and "DCN_ADMIN_KEYS" in r.json()["error"]


def test_keys_from_a_file_one_a_line(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# inference keys\nalpha\n\n  beta  \n")
    assert read_keys(f"@{path}") == ["alpha", "beta"]
    assert read_keys(" a, b ,") == ["a", "b"]
    settings = Settings(api_keys=f"@{path}")
    assert KeyRing.from_settings(settings).check("Bearer beta") is None
    assert "beta" not in repr(settings)  # a secret: not in logs or tracebacks


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    calls, compare = [], hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    ring = KeyRing(["first", "second"], ["third"])
    assert ring.check("Bearer first") is None
    assert len(calls) == 3  # no early exit on the first match


def test_cors_is_off_by_default_and_on_for_listed_origins():
    origin = {"Origin": "https://maps.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(Settings(), backend=FakeBackend())) as client:
        assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    app = create_app(Settings(cors_origins="https://maps.example"), backend=FakeBackend())
    with TestClient(app) as client:
        r = client.options("/detect", headers={**origin,
                                               "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://maps.example"
