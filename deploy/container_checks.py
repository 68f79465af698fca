"""Checks against the running container, for deploy/test_image.sh (host Python, the project venv).

    python deploy/container_checks.py drain URL --stop "docker-compose stop dcnserve"
    python deploy/container_checks.py triton-repository DIR

`drain`: sends a burst of /detect requests, waits until the service has them (all sent, the
queue holding the rest while a batch runs), runs the stop command (SIGTERM) and checks that
every request gets its 200 with detections: none refused, reset or left without an answer.
URL should reach the container directly (its bridge address), not through Docker's port proxy,
which would turn a refused connection into an accepted-then-closed one.

`triton-repository`: the written model repository parses with Triton's own config schema and
its declared inputs and outputs are the ONNX graph's.
"""
import argparse
import http.client
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request


def soap_image() -> bytes:
    """DeepForest's SOAP_061.png (a 400x400 aerial photo), as the smoke test uses."""
    package = importlib.util.find_spec("deepforest").submodule_search_locations[0]
    with open(os.path.join(package, "data", "SOAP_061.png"), "rb") as f:
        return f.read()


def metric(url: str, name: str) -> float:
    """Prometheus metric `name` summed over its labels (e.g. every served model and version)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        values = [float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines()
                  if line.startswith((name + " ", name + "{"))]
    if not values:
        raise KeyError(name)
    return sum(values)


class Request(threading.Thread):
    """One POST /detect on its own connection; `sent` is set once the body is out."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(daemon=True)
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.body = parts.hostname, parts.port or 80, body
        self.sent = threading.Event()
        self.status, self.error, self.detections = None, None, None

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            conn.request("POST", "/detect", self.body, {"Content-Type": "image/png"})
            self.sent.set()
            response = conn.getresponse()
            self.status, payload = response.status, response.read()
            if self.status == 200:
                self.detections = len(json.loads(payload)["detections"])
        except Exception as e:  # refused, reset, closed without an answer: reported below
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.sent.set()


def drain(url: str, requests: int, stop: str) -> int:
    with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
        max_batch = json.load(r)["max_batch_size"]
    body = soap_image()
    burst = [Request(url, body) for _ in range(requests)]
    for request in burst:
        request.start()
    deadline = time.monotonic() + 60
    for request in burst:
        request.sent.wait(max(deadline - time.monotonic(), 0))
    # Every request is in: one batch runs, the rest wait in the queue.
    depth = 0.0
    while time.monotonic() < deadline:
        depth = metric(url, "dcn_queue_depth")
        if depth >= requests - max_batch:
            break
        time.sleep(0.05)
    else:
        print(f"drain: FAIL: the burst never queued (queue depth {depth})", file=sys.stderr)
        return 1
    time.sleep(0.5)  # the stragglers of the first batch reach the service
    depth = metric(url, "dcn_queue_depth")
    start = time.monotonic()
    stopped = subprocess.run(shlex.split(stop), capture_output=True, text=True)
    stop_s = time.monotonic() - start
    for request in burst:
        request.join(300)
    answered = [r for r in burst if r.status == 200 and r.detections is not None]
    failed = [r for r in burst if r not in answered]
    print(f"drain: {requests} requests accepted, {int(depth)} still queued at SIGTERM; "
          f"{len(answered)} answered 200, {len(failed)} dropped or refused; "
          f"the stop took {stop_s:.1f} s")
    for r in failed:
        print(f"drain: FAIL: status {r.status}, {r.error}", file=sys.stderr)
    if stopped.returncode != 0:
        print(f"drain: FAIL: `{stop}` exited {stopped.returncode}: {stopped.stderr}",
              file=sys.stderr)
    return 0 if not failed and stopped.returncode == 0 else 1


def triton_repository(folder: str) -> int:
    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    configs = [os.path.join(root, "config.pbtxt") for root, _, files in os.walk(folder)
               if "config.pbtxt" in files]
    if len(configs) != 1:
        print(f"triton-repository: FAIL: {len(configs)} config.pbtxt in {folder}",
              file=sys.stderr)
        return 1
    with open(configs[0]) as f:
        config = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
    graph = onnx.load(os.path.join(os.path.dirname(configs[0]), "1", "model.onnx")).graph
    ok = ([t.name for t in config.input] == [v.name for v in graph.input]
          and [t.name for t in config.output] == [v.name for v in graph.output]
          and config.backend == "onnxruntime" and len(config.model_operations.op_library_filename))
    print(f"triton-repository: {config.name}: config.pbtxt parses (backend {config.backend}, "
          f"max batch {config.max_batch_size}, op library "
          f"{list(config.model_operations.op_library_filename)}), inputs "
          f"{[t.name for t in config.input]} and outputs {[t.name for t in config.output]} "
          f"{'match' if ok else 'FAIL: do not match'} model.onnx")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="check", required=True)
    d = sub.add_parser("drain", help="SIGTERM during a burst: every request answered")
    d.add_argument("url", help="the service, e.g. http://<container ip>:8000")
    d.add_argument("--requests", type=int, default=16)
    d.add_argument("--stop", required=True, help="the command that stops the container")
    t = sub.add_parser("triton-repository", help="the written model repository parses")
    t.add_argument("folder")
    args = ap.parse_args()
    if args.check == "drain":
        return drain(args.url, args.requests, args.stop)
    return triton_repository(args.folder)


if __name__ == "__main__":
    sys.exit(main())
