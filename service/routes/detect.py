"""POST /detect: an image in, tree crowns (boxes, scores, labels) out."""
import asyncio
import logging
import time
import uuid
from typing import Optional

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..batcher import QueueFull, is_out_of_memory
from ..images import CONTENT_TYPES, ImageError, check_content_type, decode
from ..recent import Record
from ..schemas import Detection, DetectResponse, Error, Timing
from ..watchdog import not_ready

router = APIRouter(tags=["detection"])
log = logging.getLogger("dcnserve")

RAW_BODY = {"requestBody": {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                        for t in CONTENT_TYPES}}}


def unavailable(detail: str, retry_after: int = 1) -> HTTPException:
    return HTTPException(503, detail, headers={"Retry-After": str(retry_after)})


async def read_upload(request: Request, image: Optional[UploadFile]) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        if image is None:
            raise HTTPException(422, "multipart request without an 'image' file field")
        return await image.read()
    check_content_type(content_type)
    return await request.body()


def tile_limit(backend, max_tiles: int):
    """A decode size check: 413 for an image costing more than `max_tiles` model runs."""
    def check(width: int, height: int) -> None:
        tiles = backend.count_tiles(height, width)
        if tiles > max_tiles:
            raise ImageError(413, f"an image of {width} x {height} pixels costs {tiles} tiles of "
                                  f"inference; the limit is {max_tiles} (max_tiles)")
    return check


async def wait_for_result(request: Request, job, deadline: float):
    """The job's detections; 504 past the deadline. A caller that disconnects drops its job
    (the worker spends no more tiles on a dropped job)."""
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            job.future.cancel()
            raise HTTPException(504, "timed out waiting for inference")
        done, _ = await asyncio.wait({job.future}, timeout=min(remaining, 0.25))
        if done:
            break
        if await request.is_disconnected():
            job.future.cancel()
            raise HTTPException(499, "client disconnected")
    error = job.future.exception()
    if error is None:
        return job.future.result()
    if is_out_of_memory(error):
        raise unavailable(f"out of memory: {error}", 5)
    if isinstance(error, QueueFull):
        raise unavailable(str(error))
    log.error("inference failed", exc_info=error)
    raise HTTPException(500, f"inference failed: {type(error).__name__}")


@router.post(
    "/detect", response_model=DetectResponse, openapi_extra=RAW_BODY,
    summary="detect objects in an image",
    description="Send the image as multipart field `image`, or as the raw body with an image/* "
                "content type (JPEG, PNG, WebP, BMP, TIFF). Boxes are in original pixels after "
                "EXIF orientation.",
    responses={400: {"model": Error, "description": "undecodable or truncated image"},
               413: {"model": Error, "description": "body, declared pixel count or tile count "
                                                    "too large"},
               415: {"model": Error, "description": "unsupported content type"},
               500: {"model": Error, "description": "the backend failed on this batch"},
               503: {"model": Error, "description": "queue full, out of memory, model not "
                                                    "ready or inference stalled"},
               504: {"model": Error, "description": "request_timeout_s passed"}})
async def detect(
        request: Request,
        image: Optional[UploadFile] = File(None, description="the image (multipart upload)"),
        score_threshold: float = Query(0.3, ge=0.0, le=1.0, description="minimum score"),
        max_detections: int = Query(300, ge=1, le=5000, description="most detections returned"),
) -> DetectResponse:
    start = time.perf_counter()
    state = request.app.state
    settings = state.settings
    reason = not_ready(state)
    if reason:
        raise unavailable(reason, 5)
    data = await read_upload(request, image)
    array = await run_in_threadpool(decode, data, settings.max_image_pixels,
                                    tile_limit(state.backend, settings.max_tiles))
    try:
        job = await state.batcher.submit(array, score_threshold, max_detections)
    except QueueFull as e:
        state.metrics.rejected.labels("queue_full").inc()
        raise unavailable(f"busy: {e}") from None
    result = await wait_for_result(request, job, start + settings.request_timeout_s)
    state.metrics.images.inc()
    result_id = uuid.uuid4().hex
    height, width = array.shape[:2]
    state.recent.put(result_id, Record(data, width, height, result))
    classes = state.backend.classes
    detections = [Detection(box=[round(float(v), 2) for v in box], score=round(float(score), 5),
                            label=classes[int(label) - 1] if 0 < label <= len(classes)
                            else str(int(label)), class_id=int(label))
                  for box, score, label in zip(result["boxes"], result["scores"],
                                               result["labels"])]
    total = time.perf_counter() - start
    return DetectResponse(
        id=result_id, model=state.backend.model_name, backend=state.backend.name, width=width,
        height=height, detections=detections,
        timing_ms=Timing(queue=round(1e3 * (job.started_at - job.queued_at), 2),
                         inference=round(1e3 * job.inference_s, 2), total=round(1e3 * total, 2)))
