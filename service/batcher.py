"""Dynamic, fair batching of tiles between the routes and the backend.

Each request's image is planned into tiles (views x tiles, see service.backend). One worker runs
model batches of up to `max_batch_size` tiles, taken from the pending requests with the least
work left first (then the oldest): a large image runs in chunks, and a small request that arrives
meanwhile rides in the very next batch (without a chunk of the large one), so it waits for at most
one batch of someone else's tiles. Large requests finish one after another rather than all sharing
the worker (which would make every one of them late). When fewer tiles than a batch are pending, the
worker waits
up to `max_delay_s` after the oldest waiting request for more. Before every batch, requests whose
caller gave up (deadline, disconnect: their future is done) are dropped and cost nothing more. A
request's detections are merged when its last tile has run, filtered by its own threshold and
count.

Faults: a batch that raises fails the requests with tiles in it, and the next batch runs; a batch
that runs out of device memory is retried as halves, down to single tiles (OutOfMemory for a tile
that cannot run alone). `busy_for()` tells a watchdog how long the current worker call has run.

Several batchers (one per served model version, each with its own queue and limits) may share
one service.worker.InferenceWorker, which gives them turns in order of arrival.
"""
import asyncio
import logging
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .backend import Detections, OutOfMemory
from .worker import InferenceWorker

log = logging.getLogger("dcnserve")


class QueueFull(Exception):
    """`queue_size` requests are waiting already, or the service is shutting down."""


@dataclass
class Job:
    image: np.ndarray
    score_threshold: float
    max_detections: int
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)
    started_at: float = 0.0   # when its first tile entered a batch (0: still waiting)
    inference_s: float = 0.0  # backend time of the batches it took part in
    plan: Any = None
    outputs: List[Any] = field(default_factory=list)  # per tile run so far, in plan order

    @property
    def tiles_left(self) -> int:
        return len(self.plan.tiles) - len(self.outputs) if self.plan is not None else 1


Predict = Callable[[List[np.ndarray], float, int], List[Detections]]


class WholeImages:
    """A plain predict function seen as a tiled model whose only tile is the whole image."""

    def __init__(self, predict: Predict) -> None:
        self.predict = predict

    def plan(self, image: np.ndarray):
        return SimpleNamespace(tiles=[image])

    def run_tiles(self, tiles: Sequence[np.ndarray]) -> List[Detections]:
        return self.predict(list(tiles), 0.0, 2**31 - 1)  # each request filters its own

    def merge(self, plan, outputs: Sequence[Detections], score_threshold: float,
              max_detections: int) -> Detections:
        return _limit(outputs[0], score_threshold, max_detections)


def is_out_of_memory(error: BaseException) -> bool:
    """OutOfMemory, or a runtime's own out-of-memory error (torch.OutOfMemoryError), known by
    name: this layer does not import torch."""
    return isinstance(error, OutOfMemory) or type(error).__name__ == "OutOfMemoryError"


class Batcher:
    """`model`: a backend (plan / run_tiles / merge) or a plain predict function. `worker`: the
    inference worker shared with other batchers (default: one of its own)."""

    def __init__(self, model, max_batch_size: int, max_delay_s: float, queue_size: int,
                 observe: Optional[Callable[[int, float], None]] = None,
                 worker: Optional[InferenceWorker] = None) -> None:
        self.model = WholeImages(model) if callable(model) else model
        self.max_batch_size, self.max_delay_s = max_batch_size, max_delay_s
        self.queue_size = queue_size
        self.observe = observe or (lambda size, seconds: None)
        self.jobs: List[Job] = []  # accepted and unfinished, oldest first
        self._owns_worker = worker is None
        self.worker = worker or InferenceWorker()
        self._arrived = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._stopping = False

    @property
    def depth(self) -> int:
        """Requests waiting for their first tile to run."""
        return sum(1 for job in self.jobs if not job.started_at and not job.future.done())

    def busy_for(self) -> float:
        """Seconds the worker's current call (a batch, a plan, a merge, a probe) has run; 0 when
        idle."""
        return self.worker.busy_for()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self, timeout: Optional[float] = None) -> None:
        """Finishes every accepted request, then stops the worker. Past `timeout` (a hung
        backend) the remaining requests fail and the worker thread is abandoned."""
        self._stopping = True
        self._arrived.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
                for job in self.jobs:
                    if not job.future.done():
                        job.future.set_exception(QueueFull("the service stopped"))
                if self._owns_worker:
                    self.worker.shutdown(wait=False)
                return
        if self._owns_worker:
            self.worker.shutdown(wait=True)

    async def submit(self, image: np.ndarray, score_threshold: float,
                     max_detections: int) -> Job:
        """Accepts an image; await `job.future` for its detections. Raises QueueFull."""
        return self.submit_all([image], score_threshold, max_detections)[0]

    def submit_all(self, images: Sequence[np.ndarray], score_threshold: float,
                   max_detections: int) -> List[Job]:
        """Accepts all of the images or none (QueueFull); a job for each. Does not yield to
        the event loop, so nothing can stop the batcher between a caller's choice of it and
        the acceptance."""
        if self._stopping:
            raise QueueFull("the service is shutting down")
        if self.depth + len(images) > self.queue_size:
            raise QueueFull(f"{self.queue_size} requests are waiting")
        loop = asyncio.get_running_loop()
        jobs = [Job(image, score_threshold, max_detections, loop.create_future())
                for image in images]
        self.jobs += jobs
        self._arrived.set()
        return jobs

    async def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn` on the inference worker, between batches (e.g. the offset probe)."""
        return await self._on_worker(fn)

    async def _on_worker(self, fn: Callable, *args) -> Any:
        return await self.worker.run(fn, *args)

    def _drop_abandoned(self) -> None:
        self.jobs = [job for job in self.jobs if not job.future.done()]

    async def _wait_for_more(self) -> None:
        """Waits while fewer tiles than a batch are pending, up to max_delay after the oldest
        request that has not started."""
        while not self._stopping:
            self._drop_abandoned()
            waiting = [job.queued_at for job in self.jobs if not job.started_at]
            if not waiting or sum(j.tiles_left for j in self.jobs) >= self.max_batch_size:
                return
            remaining = min(waiting) + self.max_delay_s - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _by_work_left(self) -> List[Job]:
        return sorted(self.jobs, key=lambda job: (job.tiles_left, job.queued_at))

    async def _plan(self) -> None:
        """Plans the unplanned requests that the next batch may reach."""
        todo, reach = [], 0
        for job in self._by_work_left():
            if reach >= self.max_batch_size:
                break
            if job.plan is None:
                todo.append(job)
            reach += job.tiles_left
        if not todo:
            return

        def plan_all():
            out = []
            for job in todo:
                try:
                    out.append(self.model.plan(job.image))
                except Exception as e:  # a bad image fails its own request only
                    out.append(e)
            return out

        for job, plan in zip(todo, await self._on_worker(plan_all)):
            if isinstance(plan, Exception):
                _fail(job, plan)
            else:
                job.plan = plan
        self._drop_abandoned()

    def _deal(self) -> List[Tuple[Job, Any]]:
        """The next batch: (job, tile) pairs, least work left first. Requests that finish in it
        are not joined by a chunk of one that cannot: on a CPU a batch costs per tile, and that
        chunk would make them wait for it."""
        batch: List[Tuple[Job, Any]] = []
        for job in self._by_work_left():
            room = self.max_batch_size - len(batch)
            if job.plan is None or (batch and job.tiles_left > room):
                continue
            first = len(job.outputs)
            batch += [(job, tile) for tile in job.plan.tiles[first:first + room]]
        return batch

    def _run_split(self, tiles: List[Any]) -> List[Any]:
        """Outputs of `tiles` (an exception in place of each output that failed); a batch out
        of memory is retried as two halves."""
        try:
            outputs = list(self.model.run_tiles(tiles))
            if len(outputs) != len(tiles):
                raise RuntimeError(f"the backend returned {len(outputs)} outputs for "
                                   f"{len(tiles)} tiles")
            return outputs
        except Exception as e:
            if not is_out_of_memory(e):
                return [e] * len(tiles)
            if len(tiles) == 1:
                return [e if isinstance(e, OutOfMemory) else OutOfMemory(str(e))]
            half = len(tiles) // 2
            return self._run_split(tiles[:half]) + self._run_split(tiles[half:])

    def _merge_all(self, jobs: List[Job]) -> List[Any]:
        out = []
        for job in jobs:
            try:
                out.append(self.model.merge(job.plan, job.outputs, job.score_threshold,
                                            job.max_detections))
            except Exception as e:
                out.append(e)
        return out

    async def _run_batch(self, batch: List[Tuple[Job, Any]]) -> None:
        if not batch:
            return
        start = time.perf_counter()
        for job, _ in batch:
            job.started_at = job.started_at or start
        outputs = await self._on_worker(self._run_split, [tile for _, tile in batch])
        seconds = time.perf_counter() - start
        self.observe(len(batch), seconds)
        for job in {id(job): job for job, _ in batch}.values():
            job.inference_s += seconds
        for (job, _), output in zip(batch, outputs):
            if isinstance(output, Exception):
                _fail(job, output)
            else:
                job.outputs.append(output)
        finished = [job for job in self.jobs
                    if not job.future.done() and job.plan is not None and not job.tiles_left]
        if finished:
            for job, result in zip(finished, await self._on_worker(self._merge_all, finished)):
                if isinstance(result, Exception):
                    _fail(job, result)
                elif not job.future.done():
                    job.future.set_result(result)
        self._drop_abandoned()

    async def _loop(self) -> None:
        while True:
            self._drop_abandoned()
            if not self.jobs:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._wait_for_more()
            await self._plan()
            batch = self._deal()
            try:
                await self._run_batch(batch)
            except Exception as e:  # a bug here must not stop the worker for everyone
                log.exception("batch failed outside the backend")
                for job, _ in batch:
                    _fail(job, e)


def _fail(job: Job, error: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(error)


def _limit(result: Detections, score_threshold: float, max_detections: int) -> Detections:
    keep = np.nonzero(result["scores"] >= score_threshold)[0][:max_detections]  # sorted by score
    return {k: v[keep] for k, v in result.items()}
