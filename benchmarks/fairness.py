"""Small requests' latency while a huge image is being processed (issue 12): one client posts a
large aerial mosaic (many tiles), another posts a 400x400 photo (one tile) again and again until
the large one is answered; p50/p99/max of the small requests, and the large request's time.

    python benchmarks/fairness.py [--root DIR] [--size 2000] [--backend torch] [--device auto]

--root serves another checkout of the project (e.g. an older commit, for a before/after).
"""
import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: str, args) -> tuple:
    port = free_port()
    env = dict(os.environ, DCN_MAX_TILES="100000", DCN_REQUEST_TIMEOUT_S="600")
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--backend",
                             args.backend, "--device", args.device, "--max-batch-size", "8",
                             "--log-level", "warning"], cwd=root, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the service did not become ready")


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


async def measure(url: str, large: bytes, small: bytes):
    headers = {"content-type": "image/png"}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await client.post("/detect", content=small, headers=headers)  # warm
        t0 = time.perf_counter()
        big = asyncio.create_task(client.post("/detect", content=large, headers=headers))
        await asyncio.sleep(1.0)  # the large image is decoded and running
        latencies, statuses = [], []
        while not big.done():
            t = time.perf_counter()
            r = await client.post("/detect", content=small, headers=headers)
            latencies.append(time.perf_counter() - t)
            statuses.append(r.status_code)
        r = await big
        return time.perf_counter() - t0, r.status_code, latencies, statuses


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=ROOT, help="checkout to serve")
    ap.add_argument("--size", type=int, default=2000, help="the large image's side, pixels")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from model.training import data

    aerial = np.asarray(Image.open(os.path.join(data.deepforest_data_dir(), "SOAP_061.png"))
                        .convert("RGB"))
    reps = -(-args.size // aerial.shape[0])
    large = png(np.tile(aerial, (reps, reps, 1))[:args.size, :args.size])
    small = png(aerial)
    proc, url = start(args.root, args)
    try:
        seconds, status, latencies, statuses = asyncio.run(measure(url, large, small))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    ms = 1e3 * np.array(latencies or [np.nan])
    print(f"{args.root}: large {args.size}x{args.size} -> {status} in {seconds:.1f} s; "
          f"{len(latencies)} small requests meanwhile (statuses {sorted(set(statuses))}): "
          f"p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
          f"max {ms.max():.0f} ms")


if __name__ == "__main__":
    main()
