"""`make gpu-check DRY_RUN=1`: the GPU check walks every one of its steps on a machine without a
GPU (make -n of the build, test collection, the sanitizer workload and both GPU benchmarks on
the CPU at toy sizes), so the script cannot rot between visits to a GPU machine."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "gpu_check"))
from report import Step, exit_code  # noqa: E402

STEPS = ["environment", "build", "tests", "compute-sanitizer", "gpu_ops", "gpu_model", "service"]


def gpu_check(*args, out):
    return subprocess.run([sys.executable, "gpu_check/run.py", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    proc = gpu_check("--dry-run", "--budget", "1200", out=out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    with open(out / "report.json") as f:
        report = json.load(f)
    return proc.stdout, {s["name"]: s for s in report["steps"]}, out


def test_dry_run_walks_every_step_without_failing(dry_run):
    _, steps, out = dry_run
    assert list(steps) == STEPS
    assert steps["service"]["status"] in ("dry-run", "skip")
    assert all(s["status"] == "dry-run" for n, s in steps.items() if n != "service")
    markdown = (out / "report.md").read_text()
    assert all(f"| {name} | " in markdown for name in STEPS)


def test_dry_run_build_is_the_makefile_for_one_arch_without_a_venv(dry_run):
    _, steps, _ = dry_run
    build = steps["build"]
    assert "-o" in build["command"] and "TORCH_CUDA_ARCH_LIST=9.0" in build["command"]
    assert f"MAX_JOBS={os.cpu_count()}" in build["command"]
    assert "build_ext --inplace" in build["output_tail"]
    assert "-m venv" not in build["output_tail"] and "pip install" not in build["output_tail"]
    if os.path.exists(os.path.join(ROOT, "third_party", "onnxruntime")):
        assert "-gencode=arch=compute_90,code=sm_90" in build["output_tail"]
        assert "compute_80" not in build["output_tail"]
    else:
        assert "fetch_ort_headers.sh" in build["detail"]


def test_dry_run_collects_the_gpu_tests(dry_run):
    tail = dry_run[1]["tests"]["output_tail"]
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", tail)
    assert collected and int(collected.group(1)) >= 20, tail[-1000:]
    assert "test_cuda.py" in tail and "test_ort_cuda.py" in tail


def test_dry_run_runs_the_sanitizer_workload_and_benchmarks_on_the_cpu(dry_run):
    stdout, steps, _ = dry_run
    sanitizer = steps["compute-sanitizer"]["output_tail"]
    assert "every kernel ran forward and backward on cpu" in sanitizer
    rows = steps["gpu_ops"]["figures"]["rows"]
    assert {r["op"] for r in rows} == {"deform_conv2d", "deform_roi_pool"}
    assert all(r["ours"] > 0 for r in rows)
    assert steps["gpu_model"]["figures"]["rows"][0]["eager float32"] > 0
    assert "DRY RUN done" in stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the real check would run")
def test_without_a_gpu_the_real_check_fails_and_points_to_the_dry_run(tmp_path):
    proc = gpu_check(out=tmp_path)
    assert proc.returncode == 1
    assert "DRY_RUN=1" in proc.stdout


def test_any_failed_step_fails_the_check():
    assert exit_code([Step("build", "pass"), Step("sanitizer", "skip")]) == 0
    assert exit_code([Step("build", "pass"), Step("tests", "fail")]) == 1
    with pytest.raises(ValueError):
        Step("tests", "passed")
