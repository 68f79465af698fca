"""GET /offsets/{id}: where the deformable layers sampled, for a point of a past detection."""
from typing import Literal, Optional

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ..backend import TooDeep
from ..dependencies import require_key
from ..errors import ServiceError
from ..images import decode
from ..schemas import Error, OffsetLayer, OffsetsResponse

router = APIRouter(tags=["offsets"], dependencies=[Depends(require_key)])


def default_point(record):
    """Centre of the best detection, else of the image."""
    boxes = record.detections["boxes"]
    if len(boxes):
        x1, y1, x2, y2 = (float(v) for v in boxes[0])
        return (x1 + x2) / 2, (y1 + y2) / 2
    return record.width / 2, record.height / 2


@router.get(
    "/offsets/{result_id}", summary="sampling locations of the deformable layers",
    description="PNG of the image with the composed sampling locations of the stacked deformable "
                "layers for point (x, y) (default: centre of the best detection): one point of "
                "the top layer samples 9 points, each of those 9 more, ... Colour by layer, size "
                "by modulation weight. `format=json` returns the points instead.",
    response_model=OffsetsResponse,
    responses={200: {"content": {"image/png": {}}}, 401: {"model": Error}, 404: {"model": Error},
               422: {"model": Error}})
async def offsets(
        request: Request,
        result_id: str = Path(description="id from POST /detect"),
        x: Optional[float] = Query(None, description="image x in pixels"),
        y: Optional[float] = Query(None, description="image y in pixels"),
        layer: Optional[int] = Query(None, ge=0, description="only this layer (0 = top)"),
        depth: Optional[int] = Query(None, ge=1, description="compose the top `depth` layers "
                                     "(default and most: as many as give at most 6561 points, "
                                     "4 stacked 3x3 layers)"),
        format: Literal["png", "json"] = Query("png"),
):
    state = request.app.state
    record = state.recent.get(result_id)
    if record is None:
        raise HTTPException(404, f"no recent detection {result_id!r} (unknown or expired)")
    if (x is None) != (y is None):
        raise HTTPException(422, "give both x and y, or neither")
    if x is None:
        x, y = default_point(record)
    if not (0 <= x < record.width and 0 <= y < record.height):
        raise HTTPException(422, f"point ({x}, {y}) is outside the {record.width} x "
                                 f"{record.height} image")
    if not state.ready:
        raise HTTPException(503, "model not ready", headers={"Retry-After": "5"})
    try:  # the version that detected, else (reloaded since) the model's newest
        served = state.registry.resolve(record.model or None, record.version or None)
    except ServiceError:
        served = state.registry.resolve(record.model or None)
    image = await run_in_threadpool(decode, record.data, state.settings.max_image_pixels)
    backend = served.backend
    if layer is not None and depth is None:
        depth = layer + 1  # compose down to it (TooDeep says how far that can go)
    try:
        layers = await served.batcher.run_exclusive(
            lambda: backend.sampling_points(image, x, y, depth))
    except TooDeep as e:
        raise HTTPException(422, str(e)) from None
    for index, entry in enumerate(layers):
        entry["index"] = index
    if layer is not None:
        if layer >= len(layers):
            raise HTTPException(422, f"layer {layer} is not among the {len(layers)} composed "
                                     f"deformable layers (0 = top)")
        layers = [layers[layer]]
    if format == "json":
        return OffsetsResponse(
            id=result_id, x=x, y=y, width=record.width, height=record.height,
            layers=[OffsetLayer(index=e["index"], layer=e["layer"],
                                points=[[round(float(px), 2), round(float(py), 2)]
                                        for px, py in e["points"]],
                                weights=[round(float(w), 5) for w in e["weights"]])
                    for e in layers])
    png = await run_in_threadpool(backend.render, image, layers, x, y)
    return Response(png, media_type="image/png")
