"""`make gpu-check`: proves the GPU path on a machine with an NVIDIA GPU and a CUDA build of torch,
with the interpreter it is given (no venv, no installs), in one command of under 8 minutes:

1. build model/_C for this GPU's architecture only (and the ORT op libraries where the ONNX
   Runtime headers are in third_party/onnxruntime);
2. run every test that needs a GPU (parity, gradcheck, reduced precision, RoI ops, TorchScript /
   torch.compile, device mixes, TF32 and determinism semantics, ORT CUDA EP where one exists);
3. run compute-sanitizer memcheck over every kernel on hostile input (gpu_check/sanitize_ops.py);
4. benchmark the ops and the detector with CUDA events (benchmarks/gpu_ops.py, gpu_model.py);
5. benchmark the HTTP service when its packages import (else: the wheels to bring);
then write report.md and report.json to --out and exit 1 if a build, test, sanitizer check or
benchmark failed. --dry-run walks the same steps without a GPU: `make -n` of the build, test
collection, the sanitizer workload and the benchmarks on the CPU at toy sizes.

    python gpu_check/run.py [--dry-run] [--prebuilt] [--out build/gpu-check] [--budget 480]

--prebuilt skips step 1 and checks the libraries as they are built (the GPU image's, for its whole
architecture list: docs/gpu.md).
"""
import argparse
import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import Step, exit_code, write_json, write_markdown  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORT_HEADER = os.path.join(ROOT, "third_party", "onnxruntime", "onnxruntime_cxx_api.h")
ORT_LIBS = [os.path.join(ROOT, "onnx_plugins", "lib", name)
            for name in ("libdcn_ort.so", "libdcn_ort_cuda.so")]
GPU_TESTS = ["tests/ops/test_cuda.py", "tests/ops/test_ort_cuda.py", "tests/ops/test_bad_input.py",
             "tests/ops/test_onnx_plugins.py"]
# The service benchmark's packages (import name -> what to download) absent from bare GPU hosts.
SERVICE_PACKAGES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "pydantic_settings":
                    "pydantic-settings", "multipart": "python-multipart", "deepforest": None}


class Context:
    def __init__(self, args):
        self.args = args
        self.dry = args.dry_run
        self.deadline = time.monotonic() + args.budget
        self.env = {}

    def out(self, name):
        return os.path.join(self.args.out, name)

    def seconds_left(self, cap):
        """A step's time limit: its cap on a GPU, or what is left of the budget (the dry run's
        CPU steps take as long as the machine needs)."""
        left = int(self.deadline - time.monotonic())
        return max(1, left if self.dry else min(cap, left))


def run(ctx, name, cmd, cap, env=None):
    """Runs cmd in the repository root, echoing its output; returns (returncode, output tail,
    seconds). returncode None: it outran its share of the time budget and was killed."""
    print(f"  $ {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    lines = []
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **(env or {})}, start_new_session=True)
    limit = ctx.seconds_left(cap)
    killed = threading.Event()

    def kill():  # a watchdog, since a silent hang would never return from reading the output
        killed.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(limit, kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            print(f"  | {line}", end="", flush=True)
            lines.append(line)
        rc = proc.wait()
    finally:
        watchdog.cancel()
    if killed.is_set():
        lines.append(f"[{name}: killed after {limit} s, its share of the time budget]\n")
        print(f"  {lines[-1]}", end="", flush=True)
        rc = None
    return rc, "".join(lines[-60:]), time.monotonic() - start


def environment(ctx):
    import torch

    cuda = torch.cuda.is_available()
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "torch CUDA": torch.version.cuda, "cores": os.cpu_count(),
           "GPU": torch.cuda.get_device_name() if cuda else "none",
           "arch": "{}.{}".format(*torch.cuda.get_device_capability()) if cuda else None,
           "nvcc": shutil.which("nvcc") or _cuda_tool("nvcc"),
           "compute-sanitizer": (shutil.which("compute-sanitizer")
                                 or _cuda_tool("compute-sanitizer")),
           "ORT headers": os.path.exists(ORT_HEADER)}
    try:
        import onnxruntime

        env["onnxruntime"] = f"{onnxruntime.__version__} {onnxruntime.get_available_providers()}"
    except ImportError:
        env["onnxruntime"] = None
    ctx.env = env
    if ctx.dry:
        return Step("environment", "dry-run",
                    f"dry run: GPU steps walked on the CPU (GPU: {env['GPU']})")
    if not cuda:
        return Step("environment", "fail", "torch sees no CUDA GPU: run `make gpu-check DRY_RUN=1`"
                    " for the dry run, or use a CUDA build of torch")
    return Step("environment", "pass", f"{env['GPU']} (sm_{env['arch'].replace('.', '')})")


def _cuda_tool(name):
    path = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", name)
    return path if os.path.exists(path) else None


def build(ctx):
    """model/_C for this GPU only (ninja rebuilds what the architecture change touches), and the
    ORT libraries when their headers are here. The Makefile's own rules, minus the venv."""
    if ctx.args.prebuilt:
        return prebuilt(ctx)
    arch = ctx.env["arch"] or "9.0"
    targets = ["model/.built-cuda1"]
    note = ""
    if ctx.env["ORT headers"]:
        targets += ["onnx_plugins/lib/libdcn_ort.so", "onnx_plugins/lib/libdcn_ort_cuda.so"]
    else:
        note = ("; ORT libraries not built: no headers in third_party/onnxruntime (run "
                "`bash onnx_plugins/fetch_ort_headers.sh third_party` where apt works, and bring "
                "third_party/ along)")
    # -o: never make the venv; -W: rebuild for this arch even if built before (ninja and the
    # ORT rules are quick to redo); -j3: the three libraries side by side.
    cmd = ["make", "-j3", "-o", ".venv/.deps", "-W", "setup.py",
           "-W", "onnx_plugins/src/register.cc", f"PY={sys.executable}", "WITH_CUDA=1",
           f"TORCH_CUDA_ARCH_LIST={arch}", f"MAX_JOBS={os.cpu_count()}", *targets]
    if ctx.dry:
        cmd.insert(1, "-n")
    rc, tail, secs = run(ctx, "build", cmd, cap=360)
    status = "fail" if rc != 0 else "dry-run" if ctx.dry else "pass"
    detail = f"sm_{arch.replace('.', '')}" + (" (assumed: no GPU)" if ctx.dry else "") + note
    return Step("build", status, detail, secs, cmd, tail)


def prebuilt(ctx):
    """--prebuilt: model/_C and the ORT libraries as they are; the tests then show whether they
    hold kernels for this GPU."""
    import glob

    libs = glob.glob(os.path.join(ROOT, "model", "_C*.so")) + [p for p in ORT_LIBS
                                                                if os.path.exists(p)]
    names = ", ".join(os.path.relpath(p, ROOT) for p in libs)
    if not any(os.path.basename(p).startswith("_C") for p in libs):
        return Step("build", "fail", f"--prebuilt, but model/_C is not built (found: {names})")
    return Step("build", "dry-run" if ctx.dry else "pass", f"prebuilt: {names}")


def tests(ctx):
    files = list(GPU_TESTS)
    skipped = ""
    ort_libraries = ctx.env["ORT headers"] or (ctx.args.prebuilt and all(map(os.path.exists,
                                                                              ORT_LIBS)))
    why_not_ort = ("no `onnx` package" if importlib.util.find_spec("onnx") is None else
                   "no ORT headers, so no ORT libraries" if not ort_libraries else None)
    if why_not_ort:
        files.remove("tests/ops/test_onnx_plugins.py")
        skipped = f"; tests/ops/test_onnx_plugins.py not run: {why_not_ort}"
    junit = ctx.out("pytest.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           "-k", "cuda or device_mix", f"--junitxml={junit}", *files]
    if ctx.dry:
        cmd.append("--collect-only")
    rc, tail, secs = run(ctx, "tests", cmd, cap=300)
    counts = _junit_counts(junit)
    status = "fail" if rc != 0 else "dry-run" if ctx.dry else "pass"
    detail = ("collected only" if ctx.dry else
              ", ".join(f"{v} {k}" for k, v in counts.items())) + skipped
    return Step("tests", status, detail, secs, cmd, tail, counts)


def _junit_counts(path):
    import xml.etree.ElementTree as ET

    try:
        suite = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = int(suite.get("tests", 0))
    counts = {k: int(suite.get(k, 0)) for k in ("failures", "errors", "skipped")}
    return {"passed": total - sum(counts.values()), **counts}


def sanitizer(ctx):
    script = [sys.executable, "gpu_check/sanitize_ops.py"]
    if ctx.dry:
        rc, tail, secs = run(ctx, "sanitizer", script + ["--device", "cpu"], cap=120)
        return Step("compute-sanitizer", "fail" if rc else "dry-run",
                    "workload ran on the CPU; memcheck needs a GPU", secs, script, tail)
    tool = ctx.env["compute-sanitizer"]
    if tool is None:
        return Step("compute-sanitizer", "skip", "compute-sanitizer not found (not a pass)")
    cmd = [tool, "--tool", "memcheck", "--error-exitcode", "1", "--print-limit", "20", *script]
    # Without torch's caching allocator every tensor is its own allocation, so reads past a
    # tensor's end are caught rather than landing in a neighbour inside one cached block.
    rc, tail, secs = run(ctx, "sanitizer", cmd, cap=240,
                         env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
    if "not supported" in tail.lower() and "ERROR SUMMARY: 0 errors" not in tail:
        return Step("compute-sanitizer", "skip",
                    "the sanitizer refused this device (virtualised GPU?): NOT a pass",
                    secs, cmd, tail)
    summary = [ln for ln in tail.splitlines() if "ERROR SUMMARY" in ln]
    status = "pass" if rc == 0 and summary else "fail"
    return Step("compute-sanitizer", status, summary[-1].strip("= ") if summary else
                "no error summary", secs, cmd, tail)


def benchmark(ctx, name, script, cap):
    import json

    figures_path = ctx.out(f"{name}.json")
    cmd = [sys.executable, script, "--json", figures_path]
    if ctx.dry:
        cmd += ["--device", "cpu", "--quick"]
    rc, tail, secs = run(ctx, name, cmd, cap=cap)
    figures = {}
    if rc == 0 and os.path.exists(figures_path):
        with open(figures_path) as f:
            figures = json.load(f)
    status = "fail" if rc != 0 else "dry-run" if ctx.dry else "pass"
    detail = "toy sizes on the CPU" if ctx.dry else f"figures in {name}.json"
    return Step(name, status, detail, secs, cmd, tail, figures)


def service(ctx):
    missing = [m for m in SERVICE_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        wheels = " ".join(p for m, p in SERVICE_PACKAGES.items() if m in missing and p)
        lines = []
        if wheels:
            lines.append("python3 -m pip download -d wheels --only-binary=:all: --python-version "
                         "3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 "
                         + wheels)
        if "deepforest" in missing:
            lines.append("python3 -m pip download -d wheels --no-deps deepforest==2.1.0")
        howto = (" && ".join(lines) + "; then there: python3 -m pip install --no-index --no-deps "
                 "--target /tmp/site wheels/*.whl && PYTHONPATH=/tmp/site make gpu-check")
        print(f"  service benchmark needs {', '.join(missing)}; bring the wheels:\n  {howto}")
        return Step("service", "skip", f"missing {', '.join(missing)}; bring wheels: {howto}")
    cmd = [sys.executable, "benchmarks/service.py", "--device", "cuda", "--seconds", "8",
           "--cycles", "2", "--warmup", "3", "--raw-seconds", "2"]
    if ctx.dry:
        return Step("service", "dry-run", "packages import; on a GPU runs: " + " ".join(cmd))
    rc, tail, secs = run(ctx, "service", cmd, cap=240)
    return Step("service", "pass" if rc == 0 else "fail", "batching on/off, 1/4/16 clients",
                secs, cmd, tail)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="walk the steps without a GPU")
    ap.add_argument("--prebuilt", action="store_true",
                    help="check the libraries as built instead of building them for this GPU")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "gpu-check"))
    ap.add_argument("--budget", type=int, default=480, help="seconds for the whole check")
    args = ap.parse_args(argv)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    ctx = Context(args)
    plan = [("build", build), ("tests", tests), ("compute-sanitizer", sanitizer),
            ("op benchmarks", lambda c: benchmark(c, "gpu_ops", "benchmarks/gpu_ops.py", 150)),
            ("detector benchmark",
             lambda c: benchmark(c, "gpu_model", "benchmarks/gpu_model.py", 150)),
            ("service", service)]
    print("[gpu-check] environment", flush=True)
    steps = [environment(ctx)]
    print("  " + ", ".join(f"{k}: {v}" for k, v in ctx.env.items()), flush=True)
    print(f"  -> {steps[0].status}: {steps[0].detail}", flush=True)
    if steps[0].status != "fail":
        for i, (name, fn) in enumerate(plan, 1):
            if time.monotonic() >= ctx.deadline:
                steps.append(Step(name, "skip", "time budget spent (not a pass)"))
                continue
            print(f"[gpu-check {i}/{len(plan)}] {name}", flush=True)
            steps.append(fn(ctx))
            print(f"  -> {steps[-1].status}: {steps[-1].detail}", flush=True)
    write_json(ctx.out("report.json"), ctx.env, steps)
    write_markdown(ctx.out("report.md"), ctx.env, steps)
    print(f"[gpu-check] {'DRY RUN ' if ctx.dry else ''}done: "
          + ", ".join(f"{s.name} {s.status}" for s in steps)
          + f"; reports in {args.out}", flush=True)
    return exit_code(steps)


if __name__ == "__main__":
    sys.exit(main())
