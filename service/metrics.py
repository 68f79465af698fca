"""Prometheus metrics (one registry per app, so several apps can live in one process)."""
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("dcn_http_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("dcn_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("dcn_batch_size", "tiles per backend call",
                                    buckets=sorted({1, 2, 4, 8, 16, 32, 64, max_batch_size}),
                                    registry=r)
        self.inference = Histogram("dcn_inference_seconds", "backend time per batch",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.tiles = Counter("dcn_tiles", "tiles run by the backend", registry=r)
        self.images = Counter("dcn_images", "images detected", registry=r)
        self.queue_depth = Gauge("dcn_queue_depth", "requests waiting for their first batch",
                                 registry=r)
        self.rejected = Counter("dcn_rejected", "requests refused before inference", ["reason"],
                                registry=r)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.tiles.inc(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "(unmatched)"
            self.metrics.requests.labels(name, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
