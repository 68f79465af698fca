"""`python -m model.train` end to end on tiny real datasets of every format: checkpoints that
carry the dataset's classes, the metrics log and curves, resuming after kill -9 and Ctrl-C, and
`model.evaluate` / `model.release` on the run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tiny_datasets import CLASSES, WRITERS, quadrants

from model.detector import checkpoint
from model.training import evaluate, release
from model.training import train as train_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {"iterations": 2, "batch_size": 1, "crop": 128, "eval_every": 2, "warmup": 1,
        "workers": 0, "architecture": {"min_size": 128, "max_size": 128},
        "tile": {"size": 200, "overlap": 0.2, "nms_iou": 0.4}}


def recipe(folder, **changes) -> str:
    path = os.path.join(folder, "recipe.json")
    with open(path, "w") as f:
        json.dump({**TINY, **changes}, f)
    return path


def run_command(capsys, argv):
    train_command.main(argv)
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


@pytest.fixture(scope="module")
def items():
    return quadrants()


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory, items):
    folder = tmp_path_factory.mktemp("coco")
    data = WRITERS["coco"](str(folder / "data"), items)
    out = str(folder / "run")
    argv = ["--data", data, "--val-fraction", "0.25", "--out", out,
            "--config", recipe(str(folder), workers=1)]
    train_command.main(argv)
    return data, out


@pytest.mark.parametrize("fmt", ["voc", "yolo", "csv"])
def test_trains_on_every_format(tmp_path, capsys, items, fmt):
    data = WRITERS[fmt](str(tmp_path / "data"), items)
    out = str(tmp_path / "run")
    result, err = run_command(capsys, ["--data", data, "--out", out,
                                       "--val-fraction", "0.25", "--config", recipe(tmp_path)])
    assert result["iterations"] == 2 and set(result["per_class"]) == set(CLASSES)
    assert "validation: 1 of 4 images held out (25%, seed 0)" in err
    assert "all weights but the box predictor" in err  # the shipped tree model, 1 class
    config = checkpoint.load_config(os.path.join(out, "last"))
    assert config["classes"] == CLASSES and config["architecture"]["num_classes"] == 3


def test_a_run_leaves_checkpoints_with_classes_a_log_and_curves(coco_run):
    _, out = coco_run
    for name in ("best.safetensors", "last.json", "resume.pt", "curves.png", "split.json"):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert any("loss" in r for r in records)
    (val,) = [r for r in records if "AP50" in r]
    assert set(val["per_class"]) == set(CLASSES)
    config = checkpoint.load_config(os.path.join(out, "best"))
    assert config["classes"] == CLASSES
    assert len(config["training"]["validation"]["ids"]) == 1


def test_evaluate_prints_ap_per_class_and_writes_coco_results(coco_run, capsys, tmp_path):
    data, out = coco_run
    results = str(tmp_path / "detections.json")
    evaluate.main(["--checkpoint", os.path.join(out, "best"), "--data", data, "--json",
                   "--results", results])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"ap", "ap50", "per_class"} and set(summary["per_class"]) == {
        "Alive", "Dead"}
    with open(results) as f:
        detections = json.load(f)
    assert detections and {d["category_id"] for d in detections} <= {3, 17}  # the file's ids
    assert {d["image_id"] for d in detections} <= {100, 101, 102, 103}


def test_release_works_on_any_run(coco_run, tmp_path):
    _, out = coco_run
    shipped = str(tmp_path / "released")
    release.main([os.path.join(out, "last"), shipped, "--tta", "1"])
    config = checkpoint.load_config(shipped)
    assert config["classes"] == CLASSES
    assert set(config["metrics"]["validation"]["per_class"]) == set(CLASSES)


def start(argv, out):
    return subprocess.Popen([sys.executable, "-m", "model.train", *argv, "--out", out],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_iteration(out: str, n: int, proc, timeout: float = 240) -> None:
    """Waits until the run's metrics log has reached iteration n."""
    deadline = time.time() + timeout
    path = os.path.join(out, "metrics.jsonl")
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path):
            with open(path) as f:
                its = [json.loads(line)["iteration"] for line in f if line.strip()]
            if its and max(its) >= n:
                return
        time.sleep(0.2)
    raise AssertionError(f"the run did not reach iteration {n}: {proc.communicate()[1][-2000:]}")


def test_resumes_after_kill_9_with_the_batches_it_would_have_seen(tmp_path, items, capsys):
    data = WRITERS["csv"](str(tmp_path / "data"), items)
    cfg = recipe(tmp_path, iterations=5, eval_every=5, save_every=1, log_every=1)
    argv = ["--data", data, "--val-fraction", "0.25", "--config", cfg, "--init", "imagenet"]
    killed = str(tmp_path / "killed")
    proc = start(argv, killed)
    wait_for_iteration(killed, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_at = torch.load(os.path.join(killed, "resume.pt"), weights_only=False)["iteration"]
    assert 2 <= resumed_at < 5
    proc = start(argv, killed)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert f"resuming at iteration {resumed_at}" in err
    straight = str(tmp_path / "straight")
    train_command.main(argv + ["--out", straight])
    capsys.readouterr()

    def losses(out):
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return [(r["iteration"], r["loss"]) for r in map(json.loads, f) if "loss" in r]

    assert [i for i, _ in losses(killed)] == [1, 2, 3, 4, 5]
    # model, optimizer, schedule, RNG and data order restored: the same losses as one run
    assert [i for i, _ in losses(straight)] == [1, 2, 3, 4, 5]
    assert [v for _, v in losses(killed)] == pytest.approx([v for _, v in losses(straight)],
                                                           rel=1e-3)


def test_ctrl_c_saves_a_checkpoint_before_exit(tmp_path, items):
    data = WRITERS["yolo"](str(tmp_path / "data"), items)
    cfg = recipe(tmp_path, iterations=50, eval_every=50, save_every=50, log_every=1)
    out = str(tmp_path / "run")
    proc = start(["--data", data, "--val-fraction", "0.25", "--config", cfg], out)
    wait_for_iteration(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at iteration" in err and "rerun the same command to continue" in err
    state = torch.load(os.path.join(out, "resume.pt"), weights_only=False)
    assert state["iteration"] >= 1
    assert checkpoint.load_config(os.path.join(out, "last"))["training"]["iteration"] == \
        state["iteration"]


def test_resuming_with_other_classes_is_refused(coco_run, tmp_path, items, capsys):
    _, out = coco_run
    merged = WRITERS["csv"](str(tmp_path / "data"), [(s, im, b, ["tree"] * len(n))
                                                     for s, im, b, n in items])
    with pytest.raises(SystemExit) as e:
        train_command.main(["--data", merged, "--val-fraction", "0.25", "--out", out,
                            "--config", recipe(tmp_path)])
    assert e.value.code == 2 and "choose another --out" in capsys.readouterr().err
