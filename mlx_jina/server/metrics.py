"""The server's Prometheus metrics (prometheus_client), and the middleware that counts requests."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Counters mlx_jina_<name>_total, read back as attributes: `metrics.cancelled`.
TOTALS = {
    "inputs": "Inputs embedded.",
    "tokens": "Tokens embedded (usage.prompt_tokens).",
    "batches": "Forward batches run by the worker.",
    "cancelled": "Jobs dropped because the client left.",
    "timed_out": "Jobs dropped at --request-timeout.",
    "abandoned_tokens": "Tokens computed for jobs that were then dropped.",
}


class Metrics:
    """The server's metrics, updated from the event loop and the worker thread.

    Each instance has a registry of its own, so several apps can live in one process.
    """

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "mlx_jina_requests",
            "HTTP requests by path and status.",
            ["path", "status"],
            registry=registry,
        )
        self.totals = {
            name: Counter(f"mlx_jina_{name}", text, registry=registry)
            for name, text in TOTALS.items()
        }
        self.refusals = Counter(
            "mlx_jina_refusals",
            "Connections and requests refused or closed before a whole request arrived, by "
            "cause: header_timeout, body_timeout, evicted (closed to make room at a cap), "
            "max_connections, max_connections_per_client.",
            ["cause"],
            registry=registry,
        )
        self.memory_released = Gauge(
            "mlx_jina_memory_released",
            "1 once the idle worker has given freed memory back since its last work, else 0.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mlx_jina_queue_depth", "Requests waiting for the worker.", registry=registry
        )
        self.batch_requests = Histogram(
            "mlx_jina_batch_requests",
            "Requests embedded together in one worker batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self.batch_tokens = Histogram(
            "mlx_jina_batch_tokens",
            "Tokens per worker batch, padding included.",
            buckets=(64, 256, 1024, 4096, 16384, 65536),
            registry=registry,
        )
        self.latency = Histogram(
            "mlx_jina_request_duration_seconds",
            "Latency of /v1/embeddings requests.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )

    def __getattr__(self, name: str) -> float:
        if name in TOTALS:
            return self.registry.get_sample_value(f"mlx_jina_{name}_total")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def request(self, path: str, status: int, seconds: float | None = None) -> None:
        self.requests.labels(path, status).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def refused(self, cause: str) -> None:
        self.refusals.labels(cause).inc()

    def embedded(self, inputs: int, tokens: int) -> None:
        self.totals["inputs"].inc(inputs)
        self.totals["tokens"].inc(tokens)

    def batch(self, requests: int, tokens: int) -> None:
        self.totals["batches"].inc()
        self.batch_requests.observe(requests)
        self.batch_tokens.observe(tokens)

    def dropped(self, tokens: int, *, timed_out: bool) -> None:
        """A job dropped unfinished (client gone, or past its deadline) after `tokens`
        computed tokens."""
        self.totals["timed_out" if timed_out else "cancelled"].inc()
        self.totals["abandoned_tokens"].inc(tokens)

    def render(self, queue_depth: int) -> str:
        self.queue_depth.set(queue_depth)
        return generate_latest(self.registry).decode()


class RequestMetrics:
    """ASGI middleware: count each request a route answered, by path and status, and time
    the successful ones on `timed_path`."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, timed_path: str):
        self.app, self.metrics, self.timed_path = app, metrics, timed_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500  # an exception that gets out is a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router sets "endpoint" on a match; its own 404s and 405s are not counted.
            if "endpoint" in scope and status != 405:
                path = scope["path"]
                timed = path == self.timed_path and status == 200
                self.metrics.request(path, status, time.perf_counter() - start if timed else None)
