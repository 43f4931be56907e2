"""The composition root: every part of the registry, built once from the settings.

`berth serve` (through `create_app`), every admin command and the tests take their parts
from a `Registry`, so storage, the database, the indexes, the services and auth are wired in
this one place. Each part is built on first use: `berth quota ls` opens the database and
nothing else, and importing this module costs nothing beyond the settings.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from typing import TYPE_CHECKING

from registry.clock import SYSTEM_CLOCK, Clock
from registry.config import Settings

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import Engine
    from starlette.applications import Starlette

    from registry.api.auth import Authenticator
    from registry.api.base import Services
    from registry.auth.tokens import TokenAuthority
    from registry.metadata.accounts import Accounts
    from registry.metadata.blobs import BlobIndex
    from registry.metadata.db import Database
    from registry.metadata.manifests import ManifestIndex
    from registry.metadata.repositories import RepositoryIndex
    from registry.metadata.tags import TagIndex
    from registry.metadata.uploads import UploadIndex
    from registry.metadata.upstreams import UpstreamIndex
    from registry.service.events import EventService
    from registry.service.gc import GarbageCollector
    from registry.service.manifests import ManifestService
    from registry.service.policies import PolicyService
    from registry.service.replication import ReplicationService
    from registry.service.uploads import SessionIds
    from registry.service.upstreams import UpstreamService
    from registry.storage.base import BlobStorage
    from registry.ui.pages import UI

SETTINGS_ENV = "BERTH_SETTINGS_JSON"
THREADS = 32


class Registry:
    """The parts of one registry process. `migrate=True` applies pending migrations before
    the database is first used (admin commands); `berth serve` migrates once, before its
    workers start, so the workers do not."""

    def __init__(self, settings: Settings, migrate: bool = False, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.migrate = migrate
        self.clock = clock

    # bytes and the index -------------------------------------------------------------

    @cached_property
    def storage(self) -> BlobStorage:
        from registry.storage import open_storage

        settings = self.settings
        return open_storage(settings.effective_storage, settings.s3_endpoint or None, settings.s3_redirect)

    @cached_property
    def database(self) -> Engine:
        url = self.settings.effective_database_url
        if self.migrate:
            from registry.migrate import upgrade_engine

            return upgrade_engine(url)
        from registry.metadata.db import make_engine

        return make_engine(url)

    @cached_property
    def db(self) -> Database:
        from registry.metadata.db import Database

        return Database(self.database)

    @cached_property
    def repository_index(self) -> RepositoryIndex:
        from registry.metadata.repositories import RepositoryIndex

        return RepositoryIndex(self.db)

    @cached_property
    def blob_index(self) -> BlobIndex:
        from registry.metadata.blobs import BlobIndex

        return BlobIndex(self.db, self.repository_index)

    @cached_property
    def upload_index(self) -> UploadIndex:
        from registry.metadata.uploads import UploadIndex

        return UploadIndex(self.db, self.repository_index, self.blob_index)

    @cached_property
    def manifest_index(self) -> ManifestIndex:
        from registry.metadata.manifests import ManifestIndex

        return ManifestIndex(self.db, self.repository_index, self.blob_index)

    @cached_property
    def tag_index(self) -> TagIndex:
        from registry.metadata.tags import TagIndex

        return TagIndex(self.db, self.repository_index)

    @cached_property
    def accounts(self) -> Accounts:
        from registry.metadata.accounts import Accounts

        return Accounts(self.database)

    # rules ---------------------------------------------------------------------------

    @cached_property
    def policies(self) -> PolicyService:
        from registry.metadata.policies import Policies
        from registry.service.policies import PolicyService

        return PolicyService(Policies(self.database), self.clock)

    @cached_property
    def collector(self) -> GarbageCollector:
        from registry.metadata.collect import Collector
        from registry.service.gc import GarbageCollector

        return GarbageCollector(
            Collector(self.database), self.storage, self.policies, self.settings.upload_session_lifetime, self.clock
        )

    @cached_property
    def events(self) -> EventService:
        from registry.metadata.events import Events
        from registry.service.events import EventService

        webhooks = [url.strip() for url in self.settings.webhook_urls.split(",") if url.strip()]
        return EventService(Events(self.database), webhooks, self.settings.webhook_secret)

    @cached_property
    def session_ids(self) -> SessionIds:
        from registry.service.uploads import SessionIds

        secret = self.accounts.signing_key("upload-sessions", lambda: secrets.token_hex(32))
        return SessionIds(secret.encode(), self.settings.upload_session_lifetime, self.clock)

    @cached_property
    def authority(self) -> TokenAuthority:
        from registry.auth.tokens import TokenAuthority, generate_key_pem

        service = self.settings.auth_service
        return TokenAuthority(self.accounts.signing_key("primary", generate_key_pem), service, service)

    # what the HTTP layer is handed -----------------------------------------------------

    @cached_property
    def executor(self) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="berth")

    @cached_property
    def services(self) -> Services:
        from registry.api.base import Services
        from registry.service.blobs import BlobService
        from registry.service.manifests import ManifestService
        from registry.service.uploads import HasherCache, UploadService
        from registry.service.upstream_blobs import UpstreamBlobs

        manifests = ManifestService(self.manifest_index, self.tag_index, self.repository_index, self.policies)
        upstreams = self.upstreams(manifests)
        return Services(
            blobs=BlobService(self.blob_index, self.storage),
            uploads=UploadService(
                self.upload_index, self.blob_index, self.storage, HasherCache(), self.policies, self.session_ids
            ),
            manifests=manifests,
            upstreams=upstreams,
            upstream_blobs=UpstreamBlobs(upstreams, upstreams.index, self.blob_index, self.storage),
            executor=self.executor,
            inline_reads=self.db.inline_reads,
        )

    def upstreams(self, manifests: ManifestService) -> UpstreamService:
        """The pull-through cache, serving local repositories through `manifests`."""
        from registry.service.upstreams import UpstreamService

        return UpstreamService(self.upstream_index, self.manifest_index, manifests, self.settings.default_upstream)

    @cached_property
    def upstream_index(self) -> UpstreamIndex:
        from registry.metadata.upstreams import UpstreamIndex

        return UpstreamIndex(self.db)

    @cached_property
    def replication(self) -> ReplicationService:
        """Replication to and from other registries; its local writes go through the manifest rules."""
        from registry.metadata.collect import Collector
        from registry.metadata.replication import ReplicationIndex
        from registry.service.manifests import ManifestService
        from registry.service.registry_sides import LocalSide
        from registry.service.replication import ReplicationService

        manifests = ManifestService(self.manifest_index, self.tag_index, self.repository_index, self.policies)
        check_push = self.upstreams(manifests).check_push
        local = LocalSide(
            "replication", manifests, self.blob_index, self.storage, self.upstream_index, self.events, check_push
        )
        return ReplicationService(ReplicationIndex(self.db), local, Collector(self.database))

    @cached_property
    def authenticator(self) -> Authenticator:
        from registry.api.auth import Authenticator
        from registry.auth.gate import Gate
        from registry.auth.logins import Logins
        from registry.auth.proxies import TrustedProxies

        return Authenticator(
            Gate(self.accounts),
            self.authority,
            Logins(self.accounts, self.authority, self.executor),
            TrustedProxies.parse(self.settings.trust_proxy),
            refresh_tokens=self.settings.refresh_tokens,
        )

    @cached_property
    def web_interface(self) -> UI:
        """The web interface's parts; its session key lives in the database, shared by every replica."""
        from registry.config import parse_duration
        from registry.metadata.browse import Browse
        from registry.metadata.replication import ReplicationIndex
        from registry.metadata.web_sessions import WebSessions
        from registry.service.administration import Administration
        from registry.service.browse import BrowseService
        from registry.ui.routes import build_ui, new_session_key

        return build_ui(
            self.accounts.signing_key("web-sessions", new_session_key),
            WebSessions(self.database),
            BrowseService(Browse(self.database), self.storage, self.services.manifests, self.policies),
            Administration(
                self.accounts, self.policies, self.collector, self.upstream_index.configs, ReplicationIndex(self.db)
            ),
            parse_duration(self.settings.gc_grace),
            self.settings.gc_untagged,
        )

    def readiness(self) -> list[str]:
        """Problems that make this replica unable to serve: the database and the blob store."""
        from registry.metadata.db import ping

        problems = []
        try:
            ping(self.database)
        except Exception as exc:
            problems.append(f"database: {exc}")
        try:
            self.storage.stat("sha256:" + "0" * 64)
        except Exception as exc:
            problems.append(f"storage: {exc}")
        return problems


def create_app(settings: Settings) -> Starlette:
    """The ASGI application of `berth serve`, wired from `settings`."""
    from registry.api.app import build_app

    return build_app(Registry(settings))


def app_from_environment() -> Starlette:
    """The factory uvicorn's worker processes call: settings arrive as JSON in the environment."""
    return create_app(Settings.from_json(os.environ[SETTINGS_ENV]))
