"""`berth build`'s body without click, shared by the click command and the fast path (`fast.py`).

A front door that only translates: the build itself is `engine.service.builds`; this reads
the parsed flags, picks the progress display, and sends the finished image where it was
asked to go (the local store under each `-t`, a registry with `--push`, `--output oci:DIR`
or `docker-archive:FILE`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from engine.front import fail, handled, say


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, eq, rest = value.partition("=")
        if not key:
            fail(f"invalid {what} {value!r}: expected KEY=VALUE")
        out[key] = rest if eq else os.environ.get(key, "")
    return out


def _epoch(build_args: dict[str, str]) -> int | None:
    text = build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
    if not text:
        return None
    if not text.isdigit() or len(text) > 12:
        fail(f"invalid SOURCE_DATE_EPOCH {text!r}: expected seconds since 1970")
    return int(text)


@handled
def build(context: str, tags: tuple[str, ...], push: bool, output: str | None, quiet: bool, **kw: Any) -> None:
    """`berth build` once its arguments are parsed (the parameters are the click command's)."""
    if os.geteuid() != 0:  # the rest of _require_root's checks wait for the first RUN (a cached build needs none)
        fail("berth build needs root: its steps mount overlayfs and run containers (run it with sudo)")
    from client.platform import host_platform
    from engine.build_progress import make_progress
    from engine.service.build_context import ContextError
    from engine.service.builds import Builder, BuildError, BuildOptions
    from engine.service.dockerfile import DockerfileError

    host = host_platform()
    if kw["platform"] and kw["platform"] not in (f"{host.os}/{host.architecture}", host.architecture):
        fail(f"--platform {kw['platform']}: berth builds only for this machine ({host.os}/{host.architecture})")
    from client.layout import store_name

    names = [store_name(t) for t in tags]  # a bad name is refused before anything is built
    if push and not tags:
        fail("--push needs at least one -t")
    target_location = None
    if output:
        from client.location import parse_location

        target_location = parse_location(output, default="")
        if target_location.kind not in ("oci", "docker-archive"):
            fail(f"--output {output}: use oci:DIR or docker-archive:FILE")
    build_args = _pairs(kw["build_arg"], "--build-arg")
    options = BuildOptions(
        context=Path(context),
        dockerfile=Path(kw["dockerfile"]) if kw["dockerfile"] else None,
        build_args=build_args,
        target=kw["target"],
        no_cache=kw["no_cache"],
        network="bridge" if kw["network"] == "default" else kw["network"],
        labels=_pairs(kw["label"], "--label"),
        compression=kw["compression"],
        epoch=_epoch(build_args),
    )
    mode = {"rich": "tty"}.get(kw["progress"], kw["progress"])
    progress = make_progress(mode if not quiet else "plain", open(os.devnull, "w") if quiet else None)
    try:
        result = Builder(options, progress).build()
    except (BuildError, DockerfileError, ContextError) as exc:
        progress.close()
        fail(str(exc), exc.code if isinstance(exc, BuildError) else 1)
        return
    finally:
        progress.close()
    _deliver(result.digest, len(result.manifest), tags, names, push, target_location)
    say(result.digest if quiet else f"writing image {result.digest}" + "".join(f"\nnaming to {t}" for t in tags))


def _record_tag(name: str) -> None:
    """The `image tag` event docker's build gives for each name (`service/events.py`)."""
    from engine.service.images import ImageStore, familiar
    from engine.service.paths import Paths

    store = ImageStore(Paths.default())
    store.record("tag", store.resolve(name).id, name=familiar(name))


def _deliver(digest: str, size: int, tags: tuple[str, ...], names: list[str], push: bool, target_location: Any) -> None:
    """Tag in the local store, then push and export from there with the client's copy."""
    from client.layout import open_store
    from registry.oci import mediatypes as mt
    from registry.oci.manifest import Descriptor

    layout = open_store()
    descriptor = Descriptor(mt.OCI_MANIFEST, digest, size)
    for name in names:
        if (current := layout.find(name)) is None or current.digest != digest:  # a cached rebuild rewrites nothing
            layout.add(descriptor, name)
            _record_tag(name)
    if not names and not any(e.descriptor.digest == digest for e in layout.entries()):
        layout.add(descriptor, None)
    if not push and target_location is None:
        return
    from client.copy import copy_image
    from client.layout_image import LayoutSource
    from client.location import Location, Options, open_target, reference
    from client.progress import make_reporter

    destinations = [Location("docker", reference(t)) for t in tags] if push else []
    if target_location is not None:
        if target_location.name is None and names:  # docker load tags it; oci: names it by the tag, as skopeo
            name = names[0] if target_location.kind == "docker-archive" else reference(tags[0]).tag or "latest"
            target_location = Location(target_location.kind, path=target_location.path, name=name)
        destinations.append(target_location)
    for location in destinations:
        source = LayoutSource(layout, names[0] if names else digest, "local")
        target = open_target(location, Options())
        reporter = make_reporter(quiet=not sys.stderr.isatty())
        try:
            copy_image(source, target, platform=None, jobs=4, reporter=reporter)
        finally:
            reporter.close()
            target.close()
            source.close()
