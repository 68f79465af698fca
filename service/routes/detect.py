"""POST /detect: an image in, tree crowns (boxes, scores, labels) out."""
import time
import uuid
from typing import Optional

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..dependencies import require_key
from ..errors import ServiceError
from ..images import CONTENT_TYPES, check_content_type, decode
from ..inference import detect_images, tile_limit
from ..recent import Record
from ..schemas import Detection, DetectResponse, Error, Timing

router = APIRouter(tags=["detection"], dependencies=[Depends(require_key)])

RAW_BODY = {"requestBody": {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                        for t in CONTENT_TYPES}}}


async def read_upload(request: Request, image: Optional[UploadFile]) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        if image is None:
            raise ServiceError(422, "multipart request without an 'image' file field")
        return await image.read()
    check_content_type(content_type)
    return await request.body()


@router.post(
    "/detect", response_model=DetectResponse, openapi_extra=RAW_BODY,
    summary="detect objects in an image",
    description="Send the image as multipart field `image`, or as the raw body with an image/* "
                "content type (JPEG, PNG, WebP, BMP, TIFF). Boxes are in original pixels after "
                "EXIF orientation.",
    responses={400: {"model": Error, "description": "undecodable or truncated image"},
               413: {"model": Error, "description": "body, declared pixel count or tile count "
                                                    "too large"},
               401: {"model": Error, "description": "missing or invalid key"},
               404: {"model": Error, "description": "unknown or unloaded model"},
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
        model: Optional[str] = Query(None, description="served model (GET /models); default: "
                                                       "the default model"),
        version: Optional[int] = Query(None, ge=1, description="its version; default: the "
                                                               "newest served"),
) -> DetectResponse:
    start = time.perf_counter()
    state = request.app.state
    settings = state.settings
    data = b""

    async def decode_upload(chosen):
        nonlocal data
        data = await read_upload(request, image)
        return [await run_in_threadpool(decode, data, settings.max_image_pixels,
                                        tile_limit(chosen.backend, settings.max_tiles))]

    served, (job,), (result,) = await detect_images(
        state, model, version, decode_upload, score_threshold, max_detections, start,
        request.is_disconnected)
    result_id = uuid.uuid4().hex
    height, width = job.image.shape[:2]
    state.recent.put(result_id, Record(data, width, height, result, served.name,
                                       served.version))
    classes = served.backend.classes
    detections = [Detection(box=[round(float(v), 2) for v in box], score=round(float(score), 5),
                            label=classes[int(label) - 1] if 0 < label <= len(classes)
                            else str(int(label)), class_id=int(label))
                  for box, score, label in zip(result["boxes"], result["scores"],
                                               result["labels"])]
    total = time.perf_counter() - start
    return DetectResponse(
        id=result_id, model=served.name, version=served.version, backend=served.backend.name,
        width=width, height=height, detections=detections,
        timing_ms=Timing(queue=round(1e3 * (job.started_at - job.queued_at), 2),
                         inference=round(1e3 * job.inference_s, 2), total=round(1e3 * total, 2)))
