"""Serving several models: /detect latency during a reload against steady state, the cost of the
Open Inference Protocol path (REST and gRPC) against /detect for one image, and the server's
memory before and after an unload.

    python benchmarks/repository.py [--backend auto] [--seconds 20]

Starts `python -m service` on a model repository of two copies of the shipped checkpoint (one
with other class names), 16 clients on /detect?model=trees.
"""
import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.join(ROOT, "tests", "service"))

from service_support import checkpoint_copy  # noqa: E402

from benchmarks.service import free_port  # noqa: E402
from model.training import data  # noqa: E402

ADMIN = {"Authorization": "Bearer bench-admin"}
PNG = {"content-type": "image/png"}


def version_folder(root: str, name: str, version: int, classes) -> None:
    checkpoint_copy(os.path.join(root, name, str(version)), classes)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def load(url: str, body: bytes, clients: int, seconds: float, change=None):
    """(latencies, failures, change window) of `clients` callers for `seconds`; `change()` runs
    in a thread a quarter of the way in."""
    latencies, failures, window = [], [], []

    async def client(c):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = await c.post("/detect?model=trees", content=body, headers=PNG)
            (latencies if r.status_code == 200 else failures).append((t, time.perf_counter()))

    async def changer():
        await asyncio.sleep(seconds / 4)
        window.append(time.perf_counter())
        await asyncio.to_thread(change)
        window.append(time.perf_counter())

    async with httpx.AsyncClient(base_url=url, timeout=300) as c:
        tasks = [client(c) for _ in range(clients)] + ([changer()] if change else [])
        await asyncio.gather(*tasks)
    return latencies, failures, window


def percentiles(spans):
    ms = [1e3 * (b - a) for a, b in spans]
    return (np.percentile(ms, 50), np.percentile(ms, 99)) if ms else (float("nan"),) * 2


def protocol_cost(url: str, grpc_port: int, body: bytes, rounds: int):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    def image_input(module):
        tensor = module.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([body], np.object_))
        return tensor

    http = thttp.InferenceServerClient(url[len("http://"):], network_timeout=300)
    grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    calls = {"/detect": lambda: httpx.post(url + "/detect?model=trees", content=body,
                                           headers=PNG, timeout=300).raise_for_status(),
             "REST /v2 infer (binary)": lambda: http.infer("trees", [image_input(thttp)]),
             "gRPC ModelInfer": lambda: grpc.infer("trees", [image_input(tgrpc)])}
    out = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            call()
            times.append(1e3 * (time.perf_counter() - t))
        out[name] = float(np.median(times))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with open(os.path.join(data.deepforest_data_dir(), data.VAL_IMAGES[0] + ".png"), "rb") as f:
        body = f.read()
    root = tempfile.mkdtemp(prefix="dcn-repository-")
    version_folder(root, "trees", 1, ["tree"])
    version_folder(root, "crowns", 1, ["crown"])
    port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port), "--grpc-port", str(grpc_port),
         "--model-repository", root, "--default-model", "trees", "--backend", args.backend,
         "--queue-size", "256", "--admin-keys", ADMIN["Authorization"].split()[1],
         "--log-level", "warning"], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 900
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.5)
        cost = protocol_cost(url, grpc_port, body, args.rounds)
        steady, steady_failed, _ = asyncio.run(load(url, body, args.clients, args.seconds))
        version_folder(root, "trees", 2, ["tree"])

        def reload():
            httpx.post(url + "/v2/repository/models/trees/load", headers=ADMIN,
                       timeout=600).raise_for_status()

        during, failed, (t0, t1) = asyncio.run(load(url, body, args.clients, args.seconds,
                                                    reload))
        overlapping = [(a, b) for a, b in during if b >= t0 and a <= t1]
        served = httpx.post(url + "/detect?model=trees", content=body, headers=PNG).json()
        before = rss_mib(proc.pid)
        httpx.post(url + "/v2/repository/models/crowns/unload", headers=ADMIN,
                   timeout=600).raise_for_status()
        time.sleep(1)
        after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{args.clients} clients on /detect?model=trees, {args.seconds:g} s per phase, "
          f"SOAP_061 400x400 PNG, backend {args.backend}")
    print("| phase | requests | failed | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, spans, bad in (("steady state", steady, steady_failed),
                             ("with a reload (whole phase)", during, failed),
                             (f"overlapping the reload ({t1 - t0:.1f} s)", overlapping, [])):
        p50, p99 = percentiles(spans)
        print(f"| {name} | {len(spans)} | {len(bad)} | {p50:.0f} | {p99:.0f} |")
    print(f"after the reload /detect answers with version {served['version']}")
    print("\none image, one client, median of", args.rounds)
    print("| path | ms | extra vs /detect |")
    print("|---|---|---|")
    for name, ms in cost.items():
        print(f"| {name} | {ms:.1f} | {ms - cost['/detect']:+.1f} |")
    print(f"\nserver RSS with two models: {before:.0f} MiB; after unloading one: {after:.0f} MiB "
          f"({after - before:+.0f} MiB)")


if __name__ == "__main__":
    main()
