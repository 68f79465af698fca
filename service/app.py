"""The FastAPI application: `create_app(settings)`.

The lifespan starts loading the model in the background (so /healthz answers at once and /readyz
says 503 until the model is loaded and warm), then runs the batcher; on shutdown it refuses new
work, finishes the queued requests and stops.
"""
import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .backend import Backend
from .batcher import Batcher
from .errors import ErrorMiddleware
from .images import ImageError
from .limits import BodyLimitMiddleware
from .metrics import Metrics, MetricsMiddleware
from .recent import RecentResults
from .routes import detect, health, offsets, web
from .settings import Settings
from .watchdog import watch

log = logging.getLogger("dcnserve")


async def _load(app: FastAPI, backend: Optional[Backend],
                on_fatal: Optional[Callable[[str], None]]) -> None:
    state, settings = app.state, app.state.settings
    try:
        if backend is None:
            from .model_backend import load_backend  # imports the model package: only here

            backend = await run_in_threadpool(load_backend, settings)
        await run_in_threadpool(backend.warmup)
    except Exception as e:  # reported by /readyz, and fatal for a served process
        log.exception("model failed to load")
        state.load_error = f"{type(e).__name__}: {e}"
        if on_fatal is not None:
            on_fatal(f"model failed to load: {state.load_error}")
        return
    state.backend = backend
    state.batcher = Batcher(backend, settings.max_batch_size,
                            settings.max_delay_ms / 1e3, settings.queue_size,
                            state.metrics.observe_batch)
    state.batcher.start()
    state.metrics.queue_depth.set_function(lambda: state.batcher.depth)
    state.ready = True
    if on_fatal is not None:
        state.watchdog = asyncio.get_running_loop().create_task(watch(state, on_fatal))
    log.info("ready: %s on %s (%s)", backend.model_name, backend.device, backend.name)


def create_app(settings: Optional[Settings] = None, backend: Optional[Backend] = None,
               on_fatal: Optional[Callable[[str], None]] = None) -> FastAPI:
    """The service app. `backend` replaces the one `settings` describes (tests, embedding).
    `on_fatal(reason)` is called when the service cannot go on (the model failed to load, the
    backend hung) and should stop the process; without it the app stays up and says why in
    /readyz."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.get_running_loop().create_task(_load(app, backend, on_fatal))
        yield
        app.state.ready = False
        if not loading.done():
            loading.cancel()
        if app.state.watchdog is not None:
            app.state.watchdog.cancel()
        if app.state.batcher is not None:
            # drains: accepted requests still get answers (a hung backend cannot hold us)
            await app.state.batcher.stop(timeout=settings.request_timeout_s)

    app = FastAPI(
        title="dcnserve", version="0.1.0", lifespan=lifespan,
        description="Object detection with deformable ConvNets: POST an image to /detect, look "
                    "at where the deformable layers sampled with GET /offsets/{id}.")
    app.state.settings = settings
    app.state.metrics = Metrics(settings.max_batch_size)
    app.state.recent = RecentResults(settings.recent_results, settings.recent_results_bytes)
    app.state.ready, app.state.load_error = False, None
    app.state.backend, app.state.batcher, app.state.watchdog = None, None, None

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        app.state.metrics.rejected.labels(f"image_{exc.status}").inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        text = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                         for e in errors)
        return JSONResponse({"detail": text or "invalid request"}, status_code=422)

    for router in (detect.router, offsets.router, health.router, web.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(ErrorMiddleware)  # inside the metrics: they count its 499s and 500s
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
