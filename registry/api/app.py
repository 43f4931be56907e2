"""`create_app(settings)`: builds the storage, the index and the services, explicitly."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from registry.api.auth import Authenticator
from registry.api.base import ApiVersionHeader, Services
from registry.api.errors import http_error, registry_error
from registry.api.routes import ROUTES
from registry.auth.tokens import TokenAuthority, generate_key_pem
from registry.config import Settings, parse_duration
from registry.errors import RegistryError
from registry.metadata.accounts import Accounts
from registry.metadata.collect import Collector
from registry.metadata.db import make_engine
from registry.metadata.index import Index
from registry.metadata.policies import Policies
from registry.service.blobs import BlobService
from registry.service.gc import GarbageCollector
from registry.service.manifests import ManifestService
from registry.service.policies import PolicyService
from registry.service.uploads import HasherCache, UploadService
from registry.storage import open_storage

SETTINGS_ENV = "BERTH_SETTINGS_JSON"
LOG = logging.getLogger("berth.registry")
THREADS = 32


def create_app(settings: Settings) -> Starlette:
    storage = open_storage(settings.effective_storage, settings.s3_endpoint or None, settings.s3_redirect)
    engine = make_engine(settings.effective_database_url)
    index = Index(engine)
    accounts = Accounts(engine)
    authority = TokenAuthority(
        accounts.signing_key("primary", generate_key_pem), settings.auth_service, settings.auth_service
    )
    policies = PolicyService(Policies(engine))
    collector = GarbageCollector(Collector(engine), storage, policies)

    executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="berth")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(collect_periodically(collector, settings))
        try:
            yield
        finally:
            task.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(ApiVersionHeader)],
        exception_handlers={RegistryError: registry_error, HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = Authenticator(accounts, authority, trust_proxy=settings.trust_proxy)
    app.state.services = Services(
        blobs=BlobService(index, storage),
        uploads=UploadService(index, storage, HasherCache(), policies),
        manifests=ManifestService(index, policies),
        executor=executor,
        inline_reads=index.inline_reads,
    )
    return app


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
