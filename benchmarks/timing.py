"""Timing helpers shared by the benchmark scripts.

This machine class (shared 2-core VMs) has noisy clocks, so the callables being compared are
timed interleaved (round-robin, so they see the same noise) and each reports its fastest run:
the closest estimate of its cost without interference.
"""
import argparse
import time
from typing import Callable, Dict


def compare(fns: Dict[str, Callable[[], object]], rounds: int = 30,
            warmup: int = 3) -> Dict[str, float]:
    """Seconds per call (best of `rounds`) of each callable, timed round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def op_benchmark_args(doc: str, rounds: int) -> argparse.Namespace:
    """--threads / --rounds of an op benchmark (described by the first line of `doc`), with torch
    set to that many threads and seeded."""
    import torch

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=rounds)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args
