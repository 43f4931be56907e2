"""`build_app(parts)`: the HTTP application over a wired registry (see registry/wiring.py)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute

from registry.api.connections import BodyTimeout
from registry.api.errors import body_stopped, http_error, registry_error, storage_error
from registry.api.observe import Metrics, Observe, configure_access_log
from registry.api.routes import ROUTES
from registry.config import Settings, parse_duration
from registry.errors import RegistryError
from registry.service.events import EventService
from registry.service.gc import GarbageCollector
from registry.service.replication import ReplicationService

if TYPE_CHECKING:
    from registry.wiring import Registry

LOG = logging.getLogger("berth.registry")
SCHEDULE_CHECK = 10.0


def build_app(parts: Registry) -> Starlette:
    settings, events, collector, executor = parts.settings, parts.events, parts.collector, parts.executor
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(collect_periodically(collector, settings, metrics, parts.services.upstreams.evict)),
            asyncio.create_task(publish_events(events, executor)),
            asyncio.create_task(replicate(parts.replication, executor)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.get_running_loop().run_in_executor(executor, events.flush_pulls)
            executor.shutdown(wait=False, cancel_futures=True)

    routes: list[BaseRoute] = list(ROUTES)
    if settings.ui:
        from registry.ui.routes import ROUTES as UI_ROUTES

        routes += UI_ROUTES
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(Observe, metrics=metrics, access_log=settings.log_level in ("info", "debug")),
            Middleware(BodyTimeout, seconds=parse_duration(settings.client_timeout).total_seconds()),
        ],
        exception_handlers={
            RegistryError: registry_error,
            HTTPException: http_error,
            OSError: storage_error,
            ClientDisconnect: body_stopped,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.events = events
    app.state.metrics = metrics
    app.state.readiness = parts.readiness
    configure_access_log(settings.log_level in ("info", "debug"))
    app.state.auth = parts.authenticator
    app.state.services = parts.services
    if settings.ui:
        app.state.ui = parts.web_interface
    return app


async def publish_events(events: EventService, executor: ThreadPoolExecutor) -> None:
    """Write gathered pull events and deliver due webhooks, about once a second."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        try:
            await loop.run_in_executor(executor, events.flush_pulls)
            if events.webhooks:
                await loop.run_in_executor(executor, events.deliver_due)
        except Exception:
            LOG.exception("publishing events failed")


async def replicate(replication: ReplicationService, executor: ThreadPoolExecutor) -> None:
    """Deliver due on-push replications about once a second; start due scheduled runs about
    every SCHEDULE_CHECK seconds (the `replication:NAME` lease picks one replica)."""
    loop = asyncio.get_running_loop()
    checked = 0.0
    while True:
        await asyncio.sleep(1.0)
        try:
            await loop.run_in_executor(executor, replication.deliver_due)
            if loop.time() - checked >= SCHEDULE_CHECK:
                checked = loop.time()
                await loop.run_in_executor(executor, replication.run_due)
        except Exception:
            LOG.exception("replication failed")


async def collect_periodically(
    collector: GarbageCollector, settings: Settings, metrics: Metrics, evict: Callable[[], object] | None = None
) -> None:
    """Garbage collection on a schedule (after evicting what upstream caches hold beyond their
    limits); every worker of every replica tries, the lease picks one."""
    interval = parse_duration(settings.gc_interval).total_seconds()
    if interval <= 0:
        return
    grace = parse_duration(settings.gc_grace)
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))
        try:
            if evict is not None:
                await run_in_threadpool(evict)
            report = await run_in_threadpool(collector.run, grace, settings.gc_untagged, False, "schedule")
        except Exception:
            LOG.exception("garbage collection failed")
            continue
        if report is not None:
            metrics.gc_runs.inc()
            metrics.gc_bytes.inc(report.bytes_reclaimed)
            LOG.info(
                "garbage collection removed %d blobs, %d manifests, %d uploads (%d bytes)",
                len(report.blobs),
                len(report.manifests),
                len(report.uploads),
                report.bytes_reclaimed,
            )
