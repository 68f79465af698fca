"""Liveness, readiness and Prometheus metrics."""
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..schemas import Error, Health, Ready
from ..watchdog import not_ready

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="the process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready,
            summary="the model is loaded and warm, and inference is not stalled",
            responses={503: {"model": Error}})
async def readyz(request: Request):
    state = request.app.state
    reason = not_ready(state)
    if reason:
        return JSONResponse({"detail": reason}, status_code=503, headers={"Retry-After": "5"})
    served = state.registry.serving()
    b = served.backend
    return Ready(status="ready", model=served.name, backend=b.name, device=b.device,
                 max_batch_size=state.settings.max_batch_size)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
