"""Prometheus metrics (one registry per app, so several apps can live in one process)."""
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class QueueDepths:
    """dcn_queue_depth{model,version}, read from the served versions at each scrape."""

    def __init__(self) -> None:
        self.source = lambda: ()  # yields (model, version, depth)

    def collect(self):
        family = GaugeMetricFamily("dcn_queue_depth", "requests waiting for their first batch",
                                   labels=["model", "version"])
        for model, version, depth in self.source():
            family.add_metric([model, str(version)], depth)
        yield family


class Metrics:
    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        per_version = ["model", "version"]
        self.requests = Counter("dcn_http_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("dcn_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("dcn_batch_size", "tiles per backend call", per_version,
                                    buckets=sorted({1, 2, 4, 8, 16, 32, 64, max_batch_size}),
                                    registry=r)
        self.inference = Histogram("dcn_inference_seconds", "backend time per batch",
                                   per_version, buckets=LATENCY_BUCKETS, registry=r)
        self.tiles = Counter("dcn_tiles", "tiles run by the backend", per_version, registry=r)
        self.images = Counter("dcn_images", "images detected", per_version, registry=r)
        self.queue_depth = QueueDepths()
        r.register(self.queue_depth)
        self.rejected = Counter("dcn_rejected", "requests refused before inference", ["reason"],
                                registry=r)
        self.model_ready = Gauge("dcn_model_ready", "1 for each model version serving",
                                 per_version, registry=r)
        self.model_loads = Counter("dcn_model_loads", "model (re)loads by result",
                                   ["model", "result"], registry=r)
        self.grpc_requests = Counter("dcn_grpc_requests", "gRPC calls by method and code",
                                     ["method", "code"], registry=r)

    def batch_observer(self, model: str, version: int):
        """observe(size, seconds) for the batches of one model version."""
        labels = (model, str(version))
        size, seconds_, tiles = (m.labels(*labels) for m in (self.batch_size, self.inference,
                                                               self.tiles))

        def observe(count: int, seconds: float) -> None:
            size.observe(count)
            seconds_.observe(seconds)
            tiles.inc(count)
        return observe

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
