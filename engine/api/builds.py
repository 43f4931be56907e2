"""`POST /build`: docker's classic builder endpoint (`DOCKER_BUILDKIT=0 docker build`) over `berth build`.

The tar context is streamed to a scratch file (at most MAX_CONTEXT bytes) and unpacked with
tarfile's `data` filter (no absolute paths, no `..`, no links leaving the context, no devices);
then `python -m engine build` runs in a fresh process, because RUN steps fork containers and
relay signals, which a threaded server must not do itself. Its progress lines are streamed as
docker's `{"stream": ...}` messages, followed by the image id and tags as dockerd reports them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router

MAX_CONTEXT = 4 << 30


def _unpack(archive: Path, context: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(context, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ApiError(400, f"the build context is not a valid tar archive: {exc}") from None


def _argv(request: Request, context: Path) -> list[str]:
    argv = [sys.executable, "-m", "engine", "build", "--progress", "plain"]
    for tag in request.query.get("t", []):
        argv += ["-t", tag]
    dockerfile = request.arg("dockerfile") or "Dockerfile"
    target = (context / dockerfile).resolve()
    if not target.is_relative_to(context.resolve()):
        raise ApiError(400, f"the Dockerfile {dockerfile!r} is outside the build context")
    argv += ["-f", str(target)]
    try:
        build_args = json.loads(request.arg("buildargs") or "{}")
        labels = json.loads(request.arg("labels") or "{}")
    except ValueError:
        raise ApiError(400, "buildargs and labels must be JSON objects") from None
    if not isinstance(build_args, dict) or not isinstance(labels, dict):
        raise ApiError(400, "buildargs and labels must be JSON objects")
    argv += [f"--build-arg={k}={v}" for k, v in build_args.items() if v is not None]
    argv += [f"--label={k}={v}" for k, v in labels.items()]
    if request.arg("target"):
        argv += ["--target", str(request.arg("target"))]
    if request.flag("nocache"):
        argv.append("--no-cache")
    network = request.arg("networkmode") or "default"
    if network not in ("default", "bridge", "host", "none"):
        raise ApiError(400, f"network mode {network[:40]!r} is not supported for builds")
    return [*argv, "--network", network, str(context)]


def _image_id(digest: str) -> str:
    from engine.service.lifecycle import stores

    images, _ = stores()
    found = images.find(digest)
    return images.resolve(found).id if found else digest


def _scratch() -> Path:
    """A private directory for one upload's context, under the engine's root as dockerd keeps its
    own (contexts can be large, and /tmp is often memory); the builder's steps live beside it."""
    from engine.service.paths import Paths

    build = Paths.default().root / "build"
    build.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="context-", dir=build))


def register(router: Router) -> None:
    async def build(request: Request) -> Response:
        if request.arg("remote"):
            raise ApiError(501, "berth's engine API does not implement builds from a remote context")
        scratch = _scratch()
        try:
            archive = scratch / "context.tar"
            with open(archive, "wb") as f:
                async for piece in request.chunks(MAX_CONTEXT):
                    f.write(piece)
            context = scratch / "context"
            context.mkdir()
            await router.call(_unpack, archive, context)
            archive.unlink()
            argv = _argv(request, context)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        tags = request.query.get("t", [])
        quiet = request.flag("q")

        async def body() -> AsyncIterator[bytes]:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env=os.environ,
                )
                assert process.stdout is not None
                last, digest = "", ""
                async for raw in process.stdout:
                    line = raw.decode(errors="replace")
                    last = line.strip() or last
                    if line.startswith("writing image "):
                        digest = line.split()[2]
                    elif not line.startswith(("naming to ", "berth: ")) and not quiet:
                        yield json.dumps({"stream": line}).encode() + b"\r\n"
                code = await process.wait()
                if code != 0 or not digest:
                    message = last.removeprefix("berth: ") or f"the build failed (exit code {code})"
                    yield json.dumps({"errorDetail": {"code": code, "message": message}, "error": message}).encode()
                    return
                image_id = await router.call(_image_id, digest)
                yield json.dumps({"aux": {"ID": image_id}}).encode() + b"\r\n"
                if quiet:
                    yield json.dumps({"stream": image_id + "\n"}).encode() + b"\r\n"
                else:
                    short = image_id.removeprefix("sha256:")[:12]
                    yield json.dumps({"stream": f"Successfully built {short}\n"}).encode() + b"\r\n"
                    for tag in tags:
                        yield json.dumps({"stream": f"Successfully tagged {tag}\n"}).encode() + b"\r\n"
            finally:
                await asyncio.to_thread(shutil.rmtree, scratch, True)

        return Response(200, stream=body())

    router.add("POST", "/build", build)
