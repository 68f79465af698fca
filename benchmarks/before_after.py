"""Today's code against the code before the speed work (benchmarks/baseline.py), in one run on
this machine: the issue-14 table. Both trees run side by side as worker processes
(benchmarks/bench_worker.py) timed in alternation, so they share the machine's noise; each
figure is the best of --rounds.

    python benchmarks/before_after.py [--rounds 3] [--no-service]

Rows: tile images/s (400 x 400 dense forest tile, batch 1 and 8) with each tree's default
settings (its service default backend), the baseline's ONNX Runtime figure and torchvision's
Faster R-CNN MobileNetV3-Large-FPN at the same size; the 1249 x 1035 crop's latency; the
service at 16 clients (each tree's `python -m service` defaults); AP@0.5 on SOAP_061.
"""
import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from baseline import BASELINE, baseline_tree  # noqa: E402


class Worker:
    def __init__(self, tree: str, cache: str, kinds):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "bench_worker.py"), tree, cache, *kinds],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree)
        self._read()

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("benchmark worker exited")
            if line.startswith("{"):
                return json.loads(line)

    def __call__(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()["result"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def best_of(rounds, candidates):
    """{name: best seconds} of the callables, called in alternation `rounds` times (after one
    warm-up call each)."""
    for fn in candidates.values():
        fn()
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            best[name] = min(best[name], fn())
    return best


async def drive(url: str, body: bytes, clients: int, per_client: int) -> float:
    """Images/s of `clients` concurrent clients posting `body` `per_client` times each (after
    a warm-up round)."""
    import httpx

    async def client(c):
        for _ in range(per_client):
            r = await c.post("/detect", content=body, headers={"content-type": "image/png"})
            r.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=900) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        return clients * per_client / (time.perf_counter() - start)


def service_rate(tree: str, cache: str, body: bytes, clients: int, per_client: int) -> float:
    """Images/s of `tree`'s service (its defaults) under `clients` concurrent clients."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, DCN_CACHE_DIR=cache)
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port),
                             "--log-level", "warning", "--queue-size", "256",
                             "--request-timeout-s", "600"], cwd=tree, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the service of {tree} exited")
            time.sleep(0.5)
        return asyncio.run(drive(url, body, clients, per_client))
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-service", action="store_true")
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    before_tree = baseline_tree()
    cache = os.path.join(ROOT, "build", "bench-cache")
    before_cache, after_cache = os.path.join(cache, "before"), os.path.join(cache, "after")
    before = Worker(before_tree, before_cache, ["default", "onnxruntime"])
    after = Worker(ROOT, after_cache, ["default", "torch"])
    defaults = (before(cmd="default_backend"), after(cmd="default_backend"))
    r = args.rounds
    rows = []
    for batch in (1, 8):
        t = best_of(r, {
            "before": lambda b=batch: before(cmd="tile", kind="default", batch=b),
            "before_ort": lambda b=batch: before(cmd="tile", kind="onnxruntime", batch=b),
            "after": lambda b=batch: after(cmd="tile", kind="default", batch=b),
            "after_torch": lambda b=batch: after(cmd="tile", kind="torch", batch=b),
            "torchvision": lambda b=batch: after(cmd="torchvision", batch=b)})
        ips = {k: batch / v for k, v in t.items()}
        rows.append((f"tile images/s, batch {batch}", ips["before"], ips["after"],
                     f"{ips['after'] / ips['before']:.2f}x (target >= 2x); vs before's ONNX "
                     f"Runtime {ips['before_ort']:.2f}: {ips['after'] / ips['before_ort']:.2f}x "
                     f"(>= 1.5x); vs torchvision MobileNetV3-FPN {ips['torchvision']:.2f}: "
                     f"{ips['after'] / ips['torchvision']:.2f}x (>= 1.6x); eager now "
                     f"{ips['after_torch']:.2f}"))
    t = best_of(r, {"before": lambda: before(cmd="image", kind="default"),
                    "after": lambda: after(cmd="image", kind="default")})
    rows.append(("1249x1035 crop latency, s", t["before"], t["after"],
                 f"{t['after'] / t['before']:.2f} of before (target <= 0.33)"))
    if not args.no_service:
        from PIL import Image

        sys.path.insert(0, ROOT)
        from model.training import data

        (train,) = data.load_split(data.TRAIN_IMAGES[:1])
        buf = io.BytesIO()
        Image.fromarray(train.image[:400, :400]).save(buf, format="PNG")
        before.close()
        after.close()  # the workers' models out of memory while the services run
        rates = {"before": 0.0, "after": 0.0}
        for _ in range(2):
            for name, tree in (("before", before_tree), ("after", ROOT)):
                rates[name] = max(rates[name], service_rate(
                    tree, before_cache if name == "before" else after_cache, buf.getvalue(),
                    args.clients, 4))
        rows.append((f"service images/s, {args.clients} clients", rates["before"],
                     rates["after"], f"{rates['after'] / rates['before']:.2f}x (target >= 2x)"))
        before = Worker(before_tree, before_cache, ["default"])
        after = Worker(ROOT, after_cache, ["default"])
    ap_before, ap_after = before(cmd="ap", kind="default"), after(cmd="ap", kind="default")
    rows.append(("AP@0.5, SOAP_061", ap_before, ap_after,
                 f"{ap_after - ap_before:+.3f} (target within 0.01)"))
    before.close()
    after.close()
    print(f"before: {BASELINE[:12]} (default backend {defaults[0]}); after: this tree (default "
          f"backend {defaults[1]}); CPU, best of {r} alternating rounds")
    print("| measure | before | after | ratio |")
    print("|---|---|---|---|")
    for name, b, a, ratio in rows:
        print(f"| {name} | {b:.3f} | {a:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
