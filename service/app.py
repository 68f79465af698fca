"""The FastAPI application: `create_app(settings)`.

The lifespan starts loading the models in the background (so /healthz answers at once and
/readyz says 503 until they are loaded and warm) and the gRPC server (grpc_port); on shutdown
it refuses new work, finishes the queued requests and stops.
"""
import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import VERSION
from .backend import Backend
from .errors import ErrorMiddleware, ServiceError
from .images import ImageError
from .keys import KeyRing
from .limits import BodyLimitMiddleware
from .metrics import Metrics, MetricsMiddleware
from .recent import RecentResults
from .registry import Loader, ModelRegistry
from .routes import detect, health, inference_protocol, models, offsets, repository, web
from .settings import Settings
from .watchdog import watch

log = logging.getLogger("dcnserve")

PROTOCOL_PREFIX = "/v2"  # the Open Inference Protocol words its errors {"error": ...}


def error_response(request: Request, status: int, detail: str, headers=None) -> JSONResponse:
    key = "error" if request.url.path.startswith(PROTOCOL_PREFIX) else "detail"
    return JSONResponse({key: detail}, status_code=status, headers=headers)


def _log_access(settings: Settings, keys: KeyRing) -> None:
    if keys.inference_open:
        log.warning("running without keys: anyone who reaches %s:%d can run inference and see "
                    "recent uploads (set DCN_API_KEYS)", settings.host, settings.port)
    if not keys.management_enabled:
        log.info("model management is off (no DCN_ADMIN_KEYS)")


async def _start(app: FastAPI, on_fatal: Optional[Callable[[str], None]]) -> None:
    state = app.state
    try:
        await state.registry.start()
    except Exception as e:  # reported by /readyz, and fatal for a served process
        log.exception("model failed to load")
        state.load_error = f"{type(e).__name__}: {e}"
        if on_fatal is not None:
            on_fatal(f"model failed to load: {state.load_error}")
        return
    state.ready = True
    if on_fatal is not None:
        state.watchdog = asyncio.get_running_loop().create_task(watch(state, on_fatal))
    served = state.registry.serving()
    log.info("ready: %s on %s (%s); models: %s", served.name, served.backend.device,
             served.backend.name, ", ".join(state.registry.loaded_names()))


def create_app(settings: Optional[Settings] = None, backend: Optional[Backend] = None,
               on_fatal: Optional[Callable[[str], None]] = None,
               loader: Optional[Loader] = None) -> FastAPI:
    """The service app. `backend` replaces the one `settings` describes, and `loader`
    (checkpoint stem -> backend) the way checkpoints become backends (tests, embedding).
    `on_fatal(reason)` is called when the service cannot go on (the model failed to load, the
    backend hung) and should stop the process; without it the app stays up and says why in
    /readyz."""
    settings = settings or Settings()
    if backend is not None:
        loader = lambda checkpoint: backend  # noqa: E731
    if loader is None:
        def loader(checkpoint):
            from .model_backend import load_backend  # imports the model package: only here

            return load_backend(settings, checkpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _log_access(settings, app.state.keys)
        if settings.grpc_port:
            from .grpc_service import start_grpc_server

            app.state.grpc = await start_grpc_server(app.state, settings)
        loading = asyncio.get_running_loop().create_task(_start(app, on_fatal))
        yield
        app.state.ready = False
        if not loading.done():
            loading.cancel()
        if app.state.watchdog is not None:
            app.state.watchdog.cancel()
        if app.state.grpc is not None:
            await app.state.grpc.stop(settings.request_timeout_s)
        # drains: accepted requests still get answers (a hung backend cannot hold us)
        await app.state.registry.stop(timeout=settings.request_timeout_s)

    app = FastAPI(
        title="dcnserve", version=VERSION, lifespan=lifespan,
        description="Object detection with deformable ConvNets: POST an image to /detect, look "
                    "at where the deformable layers sampled with GET /offsets/{id}; the Open "
                    "Inference Protocol under /v2.")
    app.state.settings = settings
    app.state.metrics = Metrics(settings.max_batch_size)
    app.state.keys = KeyRing.from_settings(settings)
    app.state.registry = ModelRegistry(settings, loader, app.state.metrics)
    app.state.metrics.queue_depth.source = app.state.registry.queue_depths
    app.state.recent = RecentResults(settings.recent_results, settings.recent_results_bytes)
    app.state.ready, app.state.load_error = False, None
    app.state.watchdog, app.state.grpc = None, None

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        app.state.metrics.rejected.labels(f"image_{exc.status}").inc()
        return error_response(request, exc.status, exc.detail)

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(request, exc.status, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail),
                              getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        text = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                         for e in errors)
        return error_response(request, 422, text or "invalid request")

    for router in (detect.router, offsets.router, models.router, repository.router,
                   inference_protocol.router, inference_protocol.health_router, health.router,
                   web.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(ErrorMiddleware)  # inside the metrics: they count its 499s and 500s
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # outermost: preflights are answered before keys are asked for
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type",
                                          "Inference-Header-Content-Length"],
                           expose_headers=["Inference-Header-Content-Length"])
    return app
