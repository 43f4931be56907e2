"""What the client's commands share without click: errors as exit codes, and pull/push/copy's transfer.

The click commands (`cli.py`) and the engine's fast path for the hot commands
(`engine/fast.py`) both call these, so `berth pull` behaves the same whichever parsed it
and the fast path never imports click. Output goes straight to sys.stdout/sys.stderr,
looked up at each call (click's test runner swaps them).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from client.errors import ClientError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


def say(message: str, err: bool = False) -> None:
    """One line to stdout (or stderr), flushed, as click.echo writes it."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{message}\n")
    stream.flush()


def handled(func: F) -> F:
    """Turn client errors into a message and their exit code instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ClientError as exc:
            say(f"berth: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            say(f"berth: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            say("berth: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def options_of(**kw: Any) -> Any:
    """The transfer options from the commands' parameters."""
    from client.location import Options

    return Options(insecure=kw.get("insecure", False), ca_cert=kw.get("ca_cert"), jobs=kw.get("jobs", 4))


def transfer(source_text: str, source_default: str, target_text: str, target_default: str, kw: dict[str, Any]) -> None:
    """Copy one image between two locations (each text read with its default kind), as pull/push/copy do."""
    from client.compress import CompressingSource, choose
    from client.copy import copy_image
    from client.image import ImageSource
    from client.location import open_source, open_target, parse_location
    from client.platform import parse_platform
    from client.progress import make_reporter

    options = options_of(**kw)
    compression = choose(kw.get("compression"), kw.get("preserve_digests", False))
    platform = parse_platform(kw["platform"]) if kw.get("platform") else None
    source_location = parse_location(source_text, source_default)
    target_location = parse_location(target_text, target_default)
    source: ImageSource = open_source(source_location, options)
    if target_location.kind == "docker" and compression != "none":
        source = CompressingSource(source, compression, options.jobs)
    try:
        target = open_target(target_location, options)
        reporter = make_reporter(kw["quiet"] or kw["fmt"] == "json")
        try:
            result = copy_image(
                source,
                target,
                platform=platform,
                all_platforms=kw["all_platforms"],
                jobs=options.jobs,
                reporter=reporter,
            )
        finally:
            reporter.close()
            target.close()
    finally:
        source.close()
    if kw["fmt"] == "json":
        say(
            json.dumps(
                {
                    "source": str(source_location),
                    "target": str(target_location),
                    "digest": result.digest,
                    "mediaType": result.media_type,
                    "size": result.size,
                    "blobs": result.blobs,
                }
            )
        )
    elif not kw["quiet"]:
        say(f"{target_location}: digest: {result.digest} size: {result.size}")


@handled
def pull(reference: str, **kw: Any) -> None:
    """`berth pull` once its arguments are parsed (the parameters are the click command's)."""
    from client.location import parse_location

    location = parse_location(reference)
    if location.kind != "docker":
        raise UsageError("pull takes a registry reference; use `berth copy SRC local:REF` for other sources")
    transfer(f"docker://{location.reference}", "docker", f"local:{location.reference}", "local", kw)


@handled
def push(source: str, destination: str | None, **kw: Any) -> None:
    """`berth push` once its arguments are parsed (the parameters are the click command's)."""
    transfer(source, "local", destination or source, "docker", kw)
