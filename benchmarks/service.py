"""The HTTP service under load: 1, 4 and 16 concurrent clients (async httpx) posting a 400x400
aerial photo, with dynamic batching on (max_batch_size 8) and off (1); images/s, p50 and p99
next to the backend's raw throughput at the same batch size, measured in the same run.

    python benchmarks/service.py [--backend auto] [--device auto] [--requests-per-client 4]

Targets (issue 5): at saturation (16 clients, batching on) the service delivers >= 90% of the raw
batched throughput; p99 <= max_delay + 2 x batch latency; on a GPU, batching gives >= 2x the
images/s of batch 1 at 16 clients.
"""
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model.training import data  # noqa: E402
from service.model_backend import ModelBackend  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(args, max_batch: int, delay_ms: float):
    port = free_port()
    cmd = [sys.executable, "-m", "service", "--port", str(port), "--backend", args.backend,
           "--device", args.device, "--max-batch-size", str(max_batch), "--max-delay-ms",
           str(delay_ms), "--queue-size", "256", "--grpc-port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the service exited")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the service did not become ready")


async def drive(url: str, body: bytes, clients: int, per_client: int):
    latencies = []

    async def client(c: httpx.AsyncClient):
        for _ in range(per_client):
            t = time.perf_counter()
            r = await c.post("/detect", content=body, headers={"content-type": "image/png"})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)

    async with httpx.AsyncClient(base_url=url, timeout=600) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))  # warm-up round
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - start
    return len(latencies) / wall, np.percentile(latencies, 50), np.percentile(latencies, 99)


def raw_throughput(backend: ModelBackend, image: np.ndarray, batch: int, rounds: int) -> float:
    best = float("inf")
    backend.predict([image] * batch, 0.3, 300)
    for _ in range(rounds):
        t = time.perf_counter()
        backend.predict([image] * batch, 0.3, 300)
        best = min(best, time.perf_counter() - t)
    return batch / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto",
                    choices=["auto", "torch", "torchscript", "onnxruntime"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--max-delay-ms", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    split = data.load_split(data.VAL_IMAGES)
    image = split[0].image
    with open(os.path.join(data.deepforest_data_dir(), data.VAL_IMAGES[0] + ".png"), "rb") as f:
        body = f.read()

    rows = []
    for batching, max_batch, delay in (("on", 8, args.max_delay_ms), ("off", 1, 0.0)):
        proc, url = start_service(args, max_batch, delay)
        try:
            for clients in (1, 4, 16):
                per_client = max(2, args.requests_per_client * (1 if clients > 1 else 4))
                ips, p50, p99 = asyncio.run(drive(url, body, clients, per_client))
                rows.append((batching, max_batch, clients, ips, p50, p99))
                print(f"  batching {batching}, {clients} clients: {ips:.2f} img/s", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=120)

    backend = ModelBackend(args.backend, None, args.device)
    raw = {b: raw_throughput(backend, image, b, args.rounds) for b in (1, 8)}
    batch_latency = 8 / raw[8]
    print(f"\nservice on {backend.name}/{backend.device}, 400x400 PNG (SOAP_061), "
          f"max_delay {args.max_delay_ms} ms; raw backend: batch 1 {raw[1]:.2f} img/s, batch 8 "
          f"{raw[8]:.2f} img/s ({1e3 * batch_latency:.0f} ms per batch)")
    print("| batching | clients | images/s | p50 ms | p99 ms | raw images/s at max batch | "
          "service/raw |")
    print("|---|---|---|---|---|---|---|")
    for batching, max_batch, clients, ips, p50, p99 in rows:
        reference = raw[max_batch]
        print(f"| {batching} | {clients} | {ips:.2f} | {1e3 * p50:.0f} | {1e3 * p99:.0f} | "
              f"{reference:.2f} | {ips / reference:.2f} |")
    on16 = next(r for r in rows if r[0] == "on" and r[2] == 16)
    off16 = next(r for r in rows if r[0] == "off" and r[2] == 16)
    bound = args.max_delay_ms / 1e3 + 2 * batch_latency
    print(f"saturation (16 clients, batching on): {on16[3] / raw[8]:.2f} of raw batch-8 "
          f"throughput (target >= 0.90)")
    print(f"batching gain at 16 clients: {on16[3] / off16[3]:.2f}x (GPU target >= 2x)")
    print(f"p99 at 16 clients, batching on: {1e3 * on16[5]:.0f} ms; bound max_delay + 2 x batch "
          f"latency = {1e3 * bound:.0f} ms")


if __name__ == "__main__":
    main()
