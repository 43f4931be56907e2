"""Image endpoints over the engine's local store: list, inspect, tag, remove.

Names in the store are full references (`docker.io/library/busybox:latest`); docker's clients
show and send familiar ones (`busybox:latest`), translated here both ways.
"""

from __future__ import annotations

import calendar
import fnmatch
import time
from typing import Any

from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router, filters
from engine.service.images import familiar
from engine.service.lifecycle import stores


def _created(config: dict[str, Any]) -> int:
    text = str(config.get("created") or "")[:19]
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0


def _matches(patterns: list[str], tag: str) -> bool:
    """docker's FamiliarMatch: the pattern against the familiar name with its tag, or without it."""
    if not patterns:
        return True
    bare = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
    return any(fnmatch.fnmatchcase(tag, p) or fnmatch.fnmatchcase(bare, p) for p in patterns)


def _images(patterns: list[str] | None = None, sizes: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """docker's image list; `sizes` remembers each manifest's total size (content-addressed, never stale)."""
    sizes = {} if sizes is None else sizes
    images, _ = stores()
    if not images.paths.images.joinpath("index.json").exists():
        return []
    layout = images.layout
    by_id: dict[str, dict[str, Any]] = {}
    by_digest: dict[str, dict[str, Any] | None] = {}  # many tags of one image: resolved and sized once
    for entry in layout.entries():
        if not entry.name or entry.descriptor.artifact_type or not _matches(patterns or [], familiar(entry.name)):
            continue
        digest = entry.descriptor.digest
        if digest not in by_digest:
            by_digest[digest] = _row(images, entry, by_id, sizes)
        row = by_digest[digest]
        if row is None:
            continue
        row["RepoTags"].append(familiar(entry.name))
        repository = familiar(entry.name).rsplit(":", 1)[0] if "@" not in entry.name else familiar(entry.name)
        row["RepoDigests"].append(f"{repository.split('@')[0]}@{digest}")
    return sorted(by_id.values(), key=lambda r: r["Created"], reverse=True)


def _row(images: Any, entry: Any, by_id: dict[str, dict[str, Any]], sizes: dict[str, int]) -> dict[str, Any] | None:
    """The listing row of the image `entry` names (shared by every entry of the same image id)."""
    try:
        image = images.resolve(entry.name)
    except (LookupError, ValueError):
        return None
    if image.id not in by_id:
        digest = entry.descriptor.digest
        if digest not in sizes:
            sizes[digest] = sum(images.layout.reachable([entry.descriptor]).values())
        size = sizes[digest]
        by_id[image.id] = {
            "Id": image.id,
            "ParentId": "",
            "RepoTags": [],
            "RepoDigests": [],
            "Created": _created(image.config),
            "Size": size,
            "VirtualSize": size,
            "SharedSize": -1,
            "Labels": image.runtime.get("Labels") or {},
            "Containers": -1,
        }
    return by_id[image.id]


def _find(name: str) -> str:
    images, _ = stores()
    found = images.find(name)
    if found is None:
        raise ApiError(404, f"No such image: {name}")
    return found


def _inspect(name: str) -> dict[str, Any]:
    images, _ = stores()
    image = images.resolve(_find(name))
    rows = [r for r in _images() if r["Id"] == image.id]
    config = image.config
    return {
        "Id": image.id,
        "RepoTags": rows[0]["RepoTags"] if rows else [],
        "RepoDigests": rows[0]["RepoDigests"] if rows else [],
        "Parent": "",
        "Comment": "",
        "Created": config.get("created") or "0001-01-01T00:00:00Z",
        "Container": "",
        "ContainerConfig": {},
        "DockerVersion": "",
        "Author": config.get("author", ""),
        "Config": image.runtime,
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Size": rows[0]["Size"] if rows else 0,
        "VirtualSize": rows[0]["Size"] if rows else 0,
        "GraphDriver": {"Name": "overlay", "Data": None},
        "RootFS": {"Type": "layers", "Layers": (config.get("rootfs") or {}).get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def _tag(name: str, repo: str, tag: str) -> None:
    from client.errors import ClientError
    from client.layout import store_name

    images, _ = stores()
    source = _find(name)
    target = f"{repo}:{tag or 'latest'}"
    try:
        full = store_name(target)
    except ClientError as exc:
        raise ApiError(400, str(exc)) from None
    images.tag(source, full)


def _remove(name: str, force: bool) -> list[dict[str, str]]:
    from engine.service.lifecycle import remove_images

    images, containers = stores()
    ref = _find(name)
    image_id = images.resolve(ref).id
    untagged = [{"Untagged": familiar(r)} for r in remove_images(images, containers, [ref], force)]
    still = any(images.resolve(n).id == image_id for n in images.names())
    return untagged + ([] if still else [{"Deleted": image_id}])


def register(router: Router) -> None:
    sizes: dict[str, int] = {}

    async def listing(request: Request) -> Response:
        patterns = filters(request, ("reference", "dangling")).get("reference", [])
        return Response.json(await router.call(_images, patterns, sizes))

    async def inspect(request: Request, name: str) -> Response:
        return Response.json(await router.call(_inspect, name))

    async def tag(request: Request, name: str) -> Response:
        repo = request.arg("repo") or ""
        if not repo or len(repo) > 255:
            raise ApiError(400, "repository name must be given (and at most 255 characters)")
        await router.call(_tag, name, repo, request.arg("tag") or "")
        return Response(201)

    async def remove(request: Request, name: str) -> Response:
        return Response.json(await router.call(_remove, name, request.flag("force")))

    router.add("GET", "/images/json", listing)
    router.add("GET", r"/images/(.{1,1024})/json", inspect)
    router.add("POST", r"/images/(.{1,1024})/tag", tag)
    router.add("DELETE", r"/images/(.{1,1024})", remove)
