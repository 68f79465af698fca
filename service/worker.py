"""The inference worker: one thread that every model's batcher runs its backend calls on, one
call at a time (the runtime parallelises inside a call), taken in turn.

Turns are first come, first served (an asyncio.Lock hands itself to the longest waiter): while
model A's batch runs, model B's next call waits, and A's following call queues behind B's, so
models with work alternate batch by batch and none can starve another.
"""
import asyncio
import concurrent.futures
import time
from typing import Any, Callable, Optional


class InferenceWorker:
    def __init__(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._turn: Optional[asyncio.Lock] = None  # made on the event loop that uses it
        self._busy_since: Optional[float] = None

    def busy_for(self) -> float:
        """Seconds the current call has run; 0 when idle."""
        since = self._busy_since
        return 0.0 if since is None else time.perf_counter() - since

    async def run(self, fn: Callable, *args) -> Any:
        """`fn(*args)` on the worker thread, in this caller's turn."""
        if self._turn is None:
            self._turn = asyncio.Lock()

        def timed():
            self._busy_since = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._busy_since = None

        async with self._turn:
            return await asyncio.get_running_loop().run_in_executor(self.executor, timed)

    def shutdown(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait)
