"""What operators see: a request id on every response, JSON access logs, Prometheus metrics,
and the /healthz, /readyz and /metrics endpoints.

`build_app` makes one `Metrics`; nothing is registered at import. prometheus_client is
imported there too, because it picks its value store on import: in multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set by `berth serve` for its workers) every uvicorn worker adds
to the same figures.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.base import call

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ACCESS = logging.getLogger("berth.access")
API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
# Every response: a browser must not guess a type other than the declared one.
NOSNIFF = (b"x-content-type-options", b"nosniff")
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The registry's metrics, in a registry of their own (so two apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("berth_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "berth_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.bytes_in = Counter("berth_http_request_bytes_total", "Request body bytes received", registry=r)
        self.bytes_out = Counter("berth_http_response_bytes_total", "Response body bytes sent", registry=r)
        self.uploads = Gauge(
            "berth_uploads_in_flight", "Blob upload requests being received", multiprocess_mode="livesum", registry=r
        )
        self.gc_runs = Counter("berth_gc_runs_total", "Garbage collection runs", registry=r)
        self.gc_bytes = Counter("berth_gc_bytes_reclaimed_total", "Bytes reclaimed by garbage collection", registry=r)
        self.storage_errors = Counter(
            "berth_storage_errors_total", "Failed storage operations", ["operation"], registry=r
        )

    def exposition(self) -> bytes:
        """The text format: summed over every worker's files in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if not os.environ.get(MULTIPROCESS_ENV):
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined)
        return generate_latest(combined)


class Observe:
    """One pure-ASGI middleware for the request id, the API version header, metrics and
    the access log, so the hot path pays for one wrapper, not four."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True):
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        scope["berth.request_id"] = request_id
        status, sent, received = 500, 0, 0
        uploading = scope["method"] in ("PATCH", "PUT", "POST") and "/blobs/uploads/" in scope["path"]
        metrics = self.metrics
        if uploading:
            metrics.uploads.inc()

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    API_VERSION,
                    NOSNIFF,
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, send_wrapper)
        finally:
            if uploading:
                metrics.uploads.dec()
            elapsed = time.perf_counter() - started
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            metrics.requests.labels(route, scope["method"], str(status)).inc()
            metrics.latency.labels(route, scope["method"]).observe(elapsed)
            if received:
                metrics.bytes_in.inc(received)
            if sent:
                metrics.bytes_out.inc(sent)
            if self.access_log:
                client = scope.get("client")
                ACCESS.info(
                    json.dumps(
                        {
                            "time": time.time(),
                            "request_id": request_id,
                            "remote": client[0] if client else None,
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "route": route,
                            "duration_ms": round(elapsed * 1000, 3),
                            "bytes_in": received,
                            "bytes_out": sent,
                            "user": scope.get("berth.user"),
                        }
                    )
                )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")[:64]
    return None


def request_id(request: Request) -> str | None:
    return request.scope.get("berth.request_id")


async def healthz(request: Request) -> Response:
    return Response(b"ok\n", media_type="text/plain")


async def readyz(request: Request) -> Response:
    """Ready when the database answers and the blob store can be reached."""
    problems: list[str] = await call(request, request.app.state.readiness)
    if problems:
        return Response(("\n".join(problems) + "\n").encode(), status_code=503, media_type="text/plain")
    return Response(b"ready\n", media_type="text/plain")


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def configure_access_log(enabled: bool) -> None:
    """Access lines are JSON on stdout, one per request."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ACCESS.handlers[:] = [handler]
    ACCESS.propagate = False
    ACCESS.setLevel(logging.INFO if enabled else logging.WARNING)
