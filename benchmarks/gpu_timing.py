"""Timing for the GPU benchmarks (benchmarks/gpu_*.py): CUDA events around each call after a
warm-up, median of the timed calls; on the CPU (gpu-check's dry run) the wall clock instead, so
the scripts run everywhere."""
import argparse
import json
import statistics
import time
import warnings
from typing import Callable

import torch


def gpu_benchmark_args(doc: str) -> argparse.Namespace:
    """--device / --reps / --quick / --json of a GPU benchmark described by the first line of
    `doc`, seeded. --quick: the dry run's tiny shapes and few calls."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=20, help="timed calls (median reported)")
    ap.add_argument("--quick", action="store_true", help="toy sizes, 1 call, no warm-up (dry run)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    args.warmup = 3
    if args.quick:
        args.reps, args.warmup = 1, 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("no CUDA GPU here: use --device cpu --quick for a dry run")
    torch.manual_seed(0)
    return args


def median_ms(fn: Callable[[], object], device: str, reps: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of fn() over `reps` calls after `warmup` calls. On CUDA each call is
    bracketed by events on the current stream, so only device time between them is counted."""
    for _ in range(warmup):
        fn()
    times = []
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def synchronizations(fn: Callable[[], object], device: str) -> int:
    """How many times one call of fn() blocks the host on the GPU (torch's sync debug mode):
    each one stalls the pipeline and breaks CUDA-graph capture. 0 on the CPU."""
    if not device.startswith("cuda"):
        fn()
        return 0
    fn()  # warm-up: first-call allocations are not the op's doing
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def write_json(path: str, figures: object) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(figures, f, indent=2)
