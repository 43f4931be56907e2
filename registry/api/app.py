"""`create_app(settings)`: builds the storage, the index and the services, explicitly."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from registry.api.auth import Authenticator
from registry.api.base import Services
from registry.api.errors import http_error, registry_error, storage_error
from registry.api.observe import GC_BYTES, GC_RUNS, Observe, configure_access_log
from registry.api.routes import ROUTES
from registry.auth.tokens import TokenAuthority, generate_key_pem
from registry.config import Settings, parse_duration
from registry.errors import RegistryError
from registry.metadata.accounts import Accounts
from registry.metadata.collect import Collector
from registry.metadata.db import make_engine
from registry.metadata.events import Events
from registry.metadata.manifests import ManifestIndex
from registry.metadata.policies import Policies
from registry.service.blobs import BlobService
from registry.service.events import EventService
from registry.service.gc import GarbageCollector
from registry.service.manifests import ManifestService
from registry.service.policies import PolicyService
from registry.service.uploads import HasherCache, SessionIds, UploadService
from registry.storage import open_storage
from registry.storage.base import BlobStorage

SETTINGS_ENV = "BERTH_SETTINGS_JSON"
LOG = logging.getLogger("berth.registry")
THREADS = 32


def create_app(settings: Settings) -> Starlette:
    storage = open_storage(settings.effective_storage, settings.s3_endpoint or None, settings.s3_redirect)
    engine = make_engine(settings.effective_database_url)
    index = ManifestIndex(engine)
    accounts = Accounts(engine)
    authority = TokenAuthority(
        accounts.signing_key("primary", generate_key_pem), settings.auth_service, settings.auth_service
    )
    policies = PolicyService(Policies(engine))
    session_lifetime = settings.upload_session_lifetime
    session_ids = SessionIds(
        accounts.signing_key("upload-sessions", lambda: secrets.token_hex(32)).encode(), session_lifetime
    )
    collector = GarbageCollector(Collector(engine), storage, policies, session_lifetime)

    executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="berth")

    webhooks = [u.strip() for u in settings.webhook_urls.split(",") if u.strip()]
    events = EventService(Events(engine), webhooks, settings.webhook_secret)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(collect_periodically(collector, settings)),
            asyncio.create_task(publish_events(events, executor)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.get_running_loop().run_in_executor(executor, events.flush_pulls)
            executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Observe, access_log=settings.log_level in ("info", "debug"))],
        exception_handlers={RegistryError: registry_error, HTTPException: http_error, OSError: storage_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.events = events
    app.state.readiness = lambda: readiness(engine, storage)
    configure_access_log(settings.log_level in ("info", "debug"))
    app.state.auth = Authenticator(accounts, authority, trust_proxy=settings.trust_proxy)
    app.state.services = Services(
        blobs=BlobService(index, storage),
        uploads=UploadService(index, storage, HasherCache(), policies, session_ids),
        manifests=ManifestService(index, policies),
        executor=executor,
        inline_reads=index.inline_reads,
    )
    return app


def readiness(engine: Engine, storage: BlobStorage) -> list[str]:
    """Problems that make this replica unable to serve: the database and the blob store."""
    problems = []
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append(f"database: {exc}")
    try:
        storage.stat("sha256:" + "0" * 64)
    except Exception as exc:
        problems.append(f"storage: {exc}")
    return problems


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


async def collect_periodically(collector: GarbageCollector, settings: Settings) -> None:
    """Garbage collection on a schedule; every worker of every replica tries, the lease picks one."""
    interval = parse_duration(settings.gc_interval).total_seconds()
    if interval <= 0:
        return
    grace = parse_duration(settings.gc_grace)
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))
        try:
            report = await run_in_threadpool(collector.run, grace, settings.gc_untagged)
        except Exception:
            LOG.exception("garbage collection failed")
            continue
        if report is not None:
            GC_RUNS.inc()
            GC_BYTES.inc(report.bytes_reclaimed)
            LOG.info(
                "garbage collection removed %d blobs, %d manifests, %d uploads (%d bytes)",
                len(report.blobs),
                len(report.manifests),
                len(report.uploads),
                report.bytes_reclaimed,
            )


def app_from_environment() -> Starlette:
    """The factory uvicorn's worker processes call: settings arrive as JSON in the environment."""
    return create_app(Settings.from_json(os.environ[SETTINGS_ENV]))
