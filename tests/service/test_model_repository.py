"""The model repository: several models served at once, /detect?model=, GET /models, and the
management routes (load = reload, unload), with fake backends."""
import asyncio
import json
import os
import time

import httpx
import numpy as np
from fastapi.testclient import TestClient
from service_support import RepositoryFake, encode, fake_repository, live_server, wait_ready

from service.app import create_app
from service.settings import Settings

ADMIN = {"Authorization": "Bearer admin-key"}
PNG = {"content-type": "image/png"}
BODY = encode(np.full((32, 48, 3), 90, np.uint8))


def repository_app(root, delay: float = 0.0, **settings):
    loaded = []

    def loader(checkpoint):
        backend = RepositoryFake(checkpoint, delay)
        loaded.append(backend)
        return backend

    app = create_app(Settings(model_repository=str(root), admin_keys="admin-key", **settings),
                     loader=loader)
    return app, loaded


def test_every_model_served_with_its_own_classes_and_the_highest_version(tmp_path):
    root = fake_repository(tmp_path, {"cars": {1: ["car"], 3: ["car", "truck"]},
                                      "trees": {2: ["tree"]}})
    app, _ = repository_app(root)
    with TestClient(app) as client:
        wait_ready(client)
        r = client.post("/detect", content=BODY, headers=PNG).json()
        assert (r["model"], r["version"]) == ("cars", 3)  # first by name, newest version
        r = client.post("/detect?model=trees", content=BODY, headers=PNG).json()
        assert (r["model"], r["version"], r["detections"][0]["label"]) == ("trees", 2, "tree")
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models["cars"]["default"] and not models["trees"]["default"]
        by_version = {v["version"]: v for v in models["cars"]["versions"]}
        assert by_version[3]["state"] == "READY" and by_version[3]["classes"] == ["car", "truck"]
        assert by_version[3]["backend"] == "fake"
        assert by_version[1]["state"] == "UNAVAILABLE"  # only the newest is served by default
        metrics = client.get("/metrics").text
        assert 'dcn_images_total{model="trees",version="2"} 1.0' in metrics
        assert 'dcn_images_total{model="cars",version="3"} 1.0' in metrics
        assert 'dcn_model_ready{model="cars",version="3"} 1.0' in metrics
        assert 'dcn_queue_depth{model="trees",version="2"} 0.0' in metrics
        assert 'dcn_tiles_total{model="cars",version="3"} 1.0' in metrics


def test_unknown_model_or_version_is_404_naming_the_loaded_models(tmp_path):
    root = fake_repository(tmp_path, {"a": {1: ["x"]}, "b": {1: ["y"]}})
    app, _ = repository_app(root)
    with TestClient(app) as client:
        wait_ready(client)
        for query in ("model=nope", "model=a&version=7"):
            r = client.post("/detect?" + query, content=BODY, headers=PNG)
            assert r.status_code == 404 and "loaded models: a, b" in r.json()["detail"]


def test_first_use_loads_only_the_default_model_at_start_up(tmp_path):
    root = fake_repository(tmp_path, {"a": {1: ["x"]}, "b": {1: ["y"]}})
    app, loaded = repository_app(root, model_loading="first_use", default_model="b")
    with TestClient(app) as client:
        wait_ready(client)
        assert [b.model_name for b in loaded] == ["b"]
        assert client.post("/detect?model=a", content=BODY, headers=PNG).json()["model"] == "a"
        assert [b.model_name for b in loaded] == ["b", "a"]


def test_load_reloads_a_new_version_and_unload_frees_it(tmp_path):
    root = fake_repository(tmp_path, {"a": {1: ["x"]}, "b": {1: ["y"]}})
    app, loaded = repository_app(root)
    with TestClient(app) as client:
        wait_ready(client)
        fake_repository(tmp_path, {"a": {2: ["x", "z"]}})
        assert client.post("/v2/repository/models/a/load", headers=ADMIN).status_code == 200
        r = client.post("/detect?model=a", content=BODY, headers=PNG).json()
        assert r["version"] == 2
        old = next(b for b in loaded if b.model_name == "a" and b.version == 1)
        assert old.closed
        assert client.post("/v2/repository/models/b/unload", headers=ADMIN).status_code == 200
        assert next(b for b in loaded if b.model_name == "b").closed
        r = client.post("/detect?model=b", content=BODY, headers=PNG)
        assert r.status_code == 404 and "loaded models: a" in r.json()["detail"]
        index = client.post("/v2/repository/index", headers=ADMIN).json()
        assert {"name": "b", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} \
            in index
        ready = client.post("/v2/repository/index", json={"ready": True}, headers=ADMIN).json()
        assert [(e["name"], e["version"]) for e in ready] == [("a", "2")]
        assert client.post("/v2/repository/models/b/load", headers=ADMIN).status_code == 200
        assert client.post("/detect?model=b", content=BODY, headers=PNG).status_code == 200


def test_failed_load_keeps_the_old_version_serving_and_says_why(tmp_path):
    root = fake_repository(tmp_path, {"a": {1: ["x"]}})
    app, _ = repository_app(root)
    with TestClient(app) as client:
        wait_ready(client)
        os.makedirs(tmp_path / "a" / "2")
        with open(tmp_path / "a" / "2" / "a.json", "w") as f:
            json.dump({"broken": True, "classes": ["x"]}, f)
        open(tmp_path / "a" / "2" / "a.safetensors", "wb").close()
        r = client.post("/v2/repository/models/a/load", headers=ADMIN)
        assert r.status_code == 400
        assert "version 2" in r.json()["error"] and "do not match" in r.json()["error"]
        assert client.post("/detect?model=a", content=BODY, headers=PNG).json()["version"] == 1
        r = client.post("/v2/repository/models/nope/load", headers=ADMIN)
        assert r.status_code == 404 and "models: a" in r.json()["error"]


def hammer(url, clients, seconds, model, during):
    """`clients` concurrent callers of /detect?model= for `seconds`, `during()` run (in a
    thread) meanwhile; returns [(status, sent_at)] and when `during` began."""
    async def main():
        results, began = [], []

        async def client(c):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                sent = time.perf_counter()
                r = await c.post(f"/detect?model={model}", content=BODY, headers=PNG)
                results.append((r.status_code, sent))

        async def change():
            await asyncio.sleep(seconds / 4)
            began.append(time.perf_counter())
            await asyncio.to_thread(during)

        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            await asyncio.gather(change(), *(client(c) for _ in range(clients)))
        return results, began[0]
    return asyncio.run(main())


def test_reload_under_16_clients_fails_no_request(tmp_path):
    root = fake_repository(tmp_path, {"a": {1: ["x"]}})
    app, _ = repository_app(root, delay=0.01)
    with live_server(app) as url:
        fake_repository(tmp_path, {"a": {2: ["x"]}})
        results, _ = hammer(url, 16, 2.0, "a", lambda: httpx.post(
            url + "/v2/repository/models/a/load", headers=ADMIN, timeout=30).raise_for_status())
        assert httpx.post(url + "/detect?model=a", content=BODY, headers=PNG).json()["version"] \
            == 2
    assert len(results) > 50 and {status for status, _ in results} == {200}


def test_unload_under_16_clients_answers_every_accepted_request(tmp_path):
    root = fake_repository(tmp_path, {"a": {1: ["x"]}, "b": {1: ["y"]}})
    app, _ = repository_app(root, delay=0.01)
    with live_server(app) as url:
        results, began = hammer(url, 16, 2.0, "b", lambda: httpx.post(
            url + "/v2/repository/models/b/unload", headers=ADMIN, timeout=30)
            .raise_for_status())
    statuses = {status for status, _ in results}
    assert statuses <= {200, 404} and 200 in statuses  # accepted ones finished, none failed
    assert all(status == 200 for status, sent in results if sent < began)
