"""One request's way through a served model, the same for POST /detect, the Open Inference
Protocol's REST route and its gRPC service: readiness, the model chosen, the images checked
against its limits, submitted to its batcher, awaited within the deadline. Every refusal is a
ServiceError with the status /detect answers; each protocol words it in its own form.
"""
import asyncio
import logging
import time
from typing import Awaitable, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .backend import Detections
from .batcher import Job, QueueFull, is_out_of_memory
from .errors import CLIENT_GONE, ServiceError, unavailable
from .images import ImageError
from .registry import ModelRegistry, ModelVersion
from .watchdog import not_ready

log = logging.getLogger("dcnserve")


def check_ready(state) -> None:
    reason = not_ready(state)
    if reason:
        raise unavailable(reason, 5)


async def choose_model(state, model: Optional[str], version: Optional[int]) -> ModelVersion:
    """The serving instance a request names (404 naming the loaded models)."""
    check_ready(state)
    registry: ModelRegistry = state.registry
    await registry.ensure(model)
    return registry.resolve(model, version)


def tile_limit(backend, max_tiles: int):
    """A decode size check: 413 for an image costing more than `max_tiles` model runs."""
    def check(width: int, height: int) -> None:
        tiles = backend.count_tiles(height, width)
        if tiles > max_tiles:
            raise ImageError(413, f"an image of {width} x {height} pixels costs {tiles} tiles of "
                                  f"inference; the limit is {max_tiles} (max_tiles)")
    return check


def check_pixels(image: np.ndarray, settings, backend) -> None:
    """The limits of decoded uploads, for pixels sent as they are ([H, W, 3] uint8)."""
    height, width = image.shape[:2]
    if width * height > settings.max_image_pixels:
        raise ImageError(413, f"image of {width} x {height} pixels exceeds the limit of "
                              f"{settings.max_image_pixels} pixels")
    if width == 0 or height == 0:
        raise ImageError(400, "image has no pixels")
    tile_limit(backend, settings.max_tiles)(width, height)


def submit(state, model: Optional[str], version: Optional[int], images: Sequence[np.ndarray],
           score_threshold: float, max_detections: int) -> Tuple[ModelVersion, List[Job]]:
    """Queues the images on the model's instance serving now (after a reload meanwhile: the new
    one, not the one their limits were checked against); 503 when its queue is full.
    Synchronous, so no reload can retire the instance between its choice and the acceptance."""
    current = state.registry.resolve(model, version)  # 404 if unloaded meanwhile
    try:
        return current, current.batcher.submit_all(images, score_threshold, max_detections)
    except QueueFull as e:
        state.metrics.rejected.labels("queue_full").inc()
        raise unavailable(f"busy: {e}") from None


async def wait_for_results(jobs: List[Job], deadline: float,
                           disconnected: Callable[[], Awaitable[bool]]) -> List[Detections]:
    """The jobs' detections; 504 past the deadline. A caller that disconnects or is cancelled
    drops its jobs (the worker spends no more tiles on a dropped job)."""
    futures = [job.future for job in jobs]
    try:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise ServiceError(504, "timed out waiting for inference")
            _, pending = await asyncio.wait(futures, timeout=min(remaining, 0.25))
            if not pending or any(f.done() and f.exception() for f in futures):
                break
            if await disconnected():
                raise ServiceError(CLIENT_GONE, "client disconnected")
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    for future in futures:
        error = future.exception() if future.done() else None
        if error is not None:
            for other in futures:
                other.cancel()
            raise failure(error)
    return [future.result() for future in futures]


def failure(error: BaseException) -> ServiceError:
    if is_out_of_memory(error):
        return unavailable(f"out of memory: {error}", 5)
    if isinstance(error, QueueFull):
        return unavailable(str(error))
    log.error("inference failed", exc_info=error)
    return ServiceError(500, f"inference failed: {type(error).__name__}")


async def detect_images(state, model: Optional[str], version: Optional[int],
                        decode: Callable[[ModelVersion], Awaitable[List[np.ndarray]]],
                        score_threshold: float, max_detections: int, started: float,
                        disconnected: Callable[[], Awaitable[bool]]):
    """The whole way: choose the model, `decode(instance)` the request's images against its
    limits, queue them, wait. Returns (instance, jobs, detections per image)."""
    chosen = await choose_model(state, model, version)
    images = await decode(chosen)
    served, jobs = submit(state, model, version, images, score_threshold, max_detections)
    results = await wait_for_results(jobs, started + state.settings.request_timeout_s,
                                     disconnected)
    state.metrics.images.labels(served.name, str(served.version)).inc(len(images))
    return served, jobs, results
