"""Dynamic batching between the routes and the backend.

Requests wait in a bounded queue. A batch closes when it holds `max_batch_size` images or
`max_delay_s` has passed since its first request was queued; the backend then runs once for the
whole batch on a worker thread (off the event loop), and each request gets its own detections
(filtered by its own score threshold and count). Requests whose caller gave up (timeout,
disconnect) before their batch ran are dropped from it.
"""
import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import numpy as np

from .backend import Detections


class QueueFull(Exception):
    """The queue holds `queue_size` requests already."""


@dataclass
class Job:
    image: np.ndarray
    score_threshold: float
    max_detections: int
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0
    inference_s: float = 0.0


Predict = Callable[[List[np.ndarray], float, int], List[Detections]]


class Batcher:
    def __init__(self, predict: Predict, max_batch_size: int, max_delay_s: float,
                 queue_size: int, observe: Optional[Callable[[int, float], None]] = None) -> None:
        self.predict = predict
        self.max_batch_size, self.max_delay_s = max_batch_size, max_delay_s
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.observe = observe or (lambda size, seconds: None)
        # One worker: batches run one at a time (the runtime parallelises inside a batch).
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: Optional[asyncio.Task] = None
        self._stopping = False

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Finishes every queued request, then stops the worker."""
        self._stopping = True
        if self._task is not None:
            await self.queue.put(None)
            await self._task
        self.executor.shutdown(wait=True)

    async def submit(self, image: np.ndarray, score_threshold: float,
                     max_detections: int) -> Job:
        """Queues an image; await `job.future` for its detections. Raises QueueFull."""
        if self._stopping:
            raise QueueFull("the service is shutting down")
        job = Job(image, score_threshold, max_detections,
                  asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} requests are waiting") from None
        return job

    async def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn` on the inference worker, between batches (e.g. the offset probe)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def _next_batch(self) -> Optional[List[Job]]:
        first = await self.queue.get()
        while first is not None and first.future.done():  # its caller gave up while queued
            first = await self.queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = first.queued_at + self.max_delay_s
        while len(batch) < self.max_batch_size:
            try:
                job = self.queue.get_nowait()  # already waiting: no need to sleep
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if job is None:  # stop requested: run what we have, then stop
                self.queue.put_nowait(None)
                break
            if not job.future.done():
                batch.append(job)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            batch = [job for job in batch if not job.future.done()]  # callers that gave up
            if not batch:
                continue
            start = time.perf_counter()
            for job in batch:
                job.started_at = start
            threshold = min(job.score_threshold for job in batch)
            limit = max(job.max_detections for job in batch)
            try:
                results = await loop.run_in_executor(
                    self.executor, self.predict, [job.image for job in batch], threshold, limit)
            except Exception as e:  # the backend failed: every request of the batch learns it
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            seconds = time.perf_counter() - start
            self.observe(len(batch), seconds)
            for job, result in zip(batch, results):
                job.inference_s = seconds
                if not job.future.done():
                    job.future.set_result(_limit(result, job.score_threshold, job.max_detections))


def _limit(result: Detections, score_threshold: float, max_detections: int) -> Detections:
    keep = np.nonzero(result["scores"] >= score_threshold)[0][:max_detections]  # sorted by score
    return {k: v[keep] for k, v in result.items()}
