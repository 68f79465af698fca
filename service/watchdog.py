"""Readiness and the stall watchdog.

The service is ready when its models are loaded and the inference worker is not stuck: a worker
call running longer than `stall_timeout_s` makes /readyz and /detect answer 503 (so load
balancers look elsewhere) until it returns; one running longer than `stall_exit_s` is a hung
backend, and `watch` reports it as fatal so that the process exits for its supervisor to restart.
"""
import asyncio
from typing import Callable, Optional


def not_ready(state) -> Optional[str]:
    """Why the service cannot take work now, or None."""
    if not state.ready:
        return (f"model failed to load: {state.load_error}" if state.load_error
                else "model loading")
    if state.registry.serving() is None:
        return "no model is loaded"
    busy = state.registry.busy_for()
    if busy > state.settings.stall_timeout_s:
        return f"inference stalled: the current backend call has run for {busy:.0f} s"
    return None


async def watch(state, on_fatal: Callable[[str], None], period_s: float = 0.5) -> None:
    """Calls `on_fatal` once when the worker has been stuck for `stall_exit_s` (0: never)."""
    limit = state.settings.stall_exit_s
    while limit > 0:
        await asyncio.sleep(period_s)
        busy = state.registry.busy_for()
        if busy > limit:
            on_fatal(f"inference hung: a backend call has run for {busy:.0f} s "
                     f"(stall_exit_s {limit:g})")
            return
