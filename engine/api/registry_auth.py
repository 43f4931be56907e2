"""Pulls and logins for docker's clients: `POST /images/create` (streamed JSON progress) and `POST /auth`.

Credentials come with each request (the CLI's `X-Registry-Auth` header, base64url JSON) and are
used for that request only; without them the engine's own docker config is used, as `berth pull`
does. `POST /auth` checks credentials against the registry and stores nothing, as dockerd.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router


def credentials(header: str | None) -> Any:
    """The Credentials in an X-Registry-Auth header; None when it carries none."""
    from client.credentials import Credentials

    if not header:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        raise ApiError(400, "invalid X-Registry-Auth header: not base64url-encoded JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid X-Registry-Auth header: not a JSON object")
    username, password, token = doc.get("username"), doc.get("password"), doc.get("identitytoken")
    if not any(isinstance(v, str) and v for v in (username, password, token)):
        return None
    return Credentials(username or None, password or None, token or None)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class JsonReporter:
    """A client.progress Reporter that turns blob transfers into docker's progress messages."""

    def __init__(self, emit: Any, pushing: bool = False) -> None:
        self.emit = emit
        self.pushing = pushing
        self.lock = threading.Lock()

    def start(self, descriptor: Any) -> Any:
        done = [0]
        first = "Preparing" if self.pushing else "Pulling fs layer"
        self.emit({"status": first, "progressDetail": {}, "id": _short(descriptor.digest)})

        def progress(n: int) -> None:
            with self.lock:
                done[0] += n
                detail = {"current": done[0], "total": descriptor.size}
            moving = "Pushing" if self.pushing else "Downloading"
            self.emit({"status": moving, "progressDetail": detail, "id": _short(descriptor.digest)})

        return progress

    def finish(self, descriptor: Any, status: str) -> None:
        if "exist" in status or "skip" in status:
            text = "Layer already exists" if self.pushing else "Already exists"
        else:
            text = "Pushed" if self.pushing else "Pull complete"
        self.emit({"status": text, "progressDetail": {}, "id": _short(descriptor.digest)})

    def note(self, text: str) -> None:
        self.emit({"status": text})

    def close(self) -> None:
        return None


def _pull(reference: str, creds: Any, reporter: JsonReporter) -> list[dict[str, Any]]:
    from engine.service import images as store
    from engine.service.lifecycle import stores

    local, _ = stores()
    had = local.find(reference)
    before = local.resolve(had).manifest_digest if had else None
    store.pull(reference, reporter=reporter, credentials=creds)
    image = local.resolve(reference)
    status = "Image is up to date for" if before == image.manifest_digest else "Downloaded newer image for"
    return [{"status": f"Digest: {image.manifest_digest}"}, {"status": f"Status: {status} {reference}"}]


def _push(name: str, tag: str, creds: Any, reporter: JsonReporter) -> list[dict[str, Any]]:
    from engine.service import images as store
    from engine.service.lifecycle import stores

    reference = f"{name}:{tag}" if tag else name
    local, _ = stores()
    if local.find(reference) is None:
        raise ApiError(404, f"An image does not exist locally with the tag: {name}")
    result = store.push(reference, reporter=reporter, credentials=creds)
    shown = tag or reference.rsplit(":", 1)[-1]
    return [
        {"status": f"{shown}: digest: {result.digest} size: {result.size}"},
        {"progressDetail": {}, "aux": {"Tag": shown, "Digest": result.digest, "Size": result.size}},
    ]


def _streamed(router: Router, first: dict[str, Any], work: Any) -> Response:
    """Run `work(emit)` in the pool and stream what it emits, then its closing lines (or its error)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(doc: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, doc)

    def run() -> list[dict[str, Any]]:
        try:
            return work(emit)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    future = loop.run_in_executor(router.pool, run)

    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(first).encode() + b"\r\n"
        while (doc := await queue.get()) is not None:
            yield json.dumps(doc).encode() + b"\r\n"
        try:
            for doc in await future:
                yield json.dumps(doc).encode() + b"\r\n"
        except Exception as exc:  # noqa: BLE001 - a failed transfer is reported in the stream, as dockerd does
            message = (exc.message if isinstance(exc, ApiError) else _docker_message(exc)).strip("'\"")
            message = message or type(exc).__name__
            yield json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n"

    return Response(200, stream=body())


def _docker_message(exc: Exception) -> str:
    """A registry's refusal as dockerd prints it (`denied: requested access to the resource is denied`)."""
    from client.errors import RegistryDenied

    if isinstance(exc, RegistryDenied) and exc.errors:
        codes = (str(e.get("code", "")).lower().replace("_", " ") for e in exc.errors)
        return "; ".join(f"{code}: {e.get('message', '')}" for code, e in zip(codes, exc.errors, strict=True))
    return str(exc)


def _login(body: dict[str, Any]) -> dict[str, str]:
    from client.api import RegistryAPI
    from client.credentials import Credentials
    from client.errors import ClientError
    from registry.oci.reference import DOCKER_HUB, DOCKER_HUB_API

    server = str(body.get("serveraddress") or "docker.io")
    host = server.split("://", 1)[-1].split("/", 1)[0]
    if not host or len(host) > 255:
        raise ApiError(400, f"invalid registry address {server[:100]!r}")
    api_host = DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host
    creds = Credentials(str(body.get("username") or "") or None, str(body.get("password") or "") or None)
    try:
        api = RegistryAPI.connect(api_host, credentials=creds)
        try:
            api.ping()
        finally:
            api.close()
    except ClientError as exc:
        raise ApiError(401, f"login to {host} failed: {exc}") from None
    return {"Status": "Login Succeeded", "IdentityToken": ""}


def register(router: Router) -> None:
    async def create(request: Request) -> Response:
        if request.arg("fromSrc"):
            raise ApiError(501, "berth's engine API does not implement image import (fromSrc)")
        image, tag = request.arg("fromImage") or "", request.arg("tag") or ""
        if not image or len(image) + len(tag) > 1024:
            raise ApiError(400, "fromImage must name an image")
        reference = image if not tag else (f"{image}@{tag}" if ":" in tag else f"{image}:{tag}")
        creds = credentials(request.headers.get("x-registry-auth"))
        first, _, rest = image.partition("/")
        path = rest if rest and ("." in first or ":" in first or first == "localhost") else image
        start = {"status": f"Pulling from {path}", "id": tag or "latest"}
        return _streamed(router, start, lambda emit: _pull(reference, creds, JsonReporter(emit)))

    async def push(request: Request, name: str) -> Response:
        tag = request.arg("tag") or ""
        if len(tag) > 128:
            raise ApiError(400, "tag too long")
        creds = credentials(request.headers.get("x-registry-auth"))
        start = {"status": f"The push refers to repository [{name}]"}
        return _streamed(router, start, lambda emit: _push(name, tag, creds, JsonReporter(emit, pushing=True)))

    async def auth(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the auth config must be a JSON object")
        return Response.json(await router.call(_login, body))

    router.add("POST", "/images/create", create)
    router.add("POST", "/auth", auth)
    router.add("POST", r"/images/(.{1,1024})/push", push)
