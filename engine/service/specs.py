"""How a container's spec is made: the image config's defaults, overridden by the run options.

Docker's rules for entrypoint and cmd, env files and bare `KEY` entries, memory sizes,
volumes and signals; every option is checked here, before anything is created, so bad
input changes nothing (UsageError is docker's exit code 125).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Any

from engine.runtime.cgroups import Limits
from engine.runtime.rootfs import Mount
from engine.service.containers import Spec
from engine.service.images import Image

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 6 << 20


class UsageError(ValueError):
    """Options that cannot describe a container (exit code 125, as docker's)."""


def parse_bytes(text: str) -> int:
    """Docker's memory syntax: a number with an optional b, k, m or g suffix."""
    value = text.strip().lower()
    if len(value) > 1 and value[-1] == "b" and value[-2] in "kmg":
        value = value[:-1]
    unit = 1
    if value[-1:].isalpha():
        if value[-1] not in _UNITS:
            raise UsageError(f"invalid size: {text!r}")
        unit, value = _UNITS[value[-1]], value[:-1]
    try:
        amount = int(float(value) * unit)
    except ValueError:
        raise UsageError(f"invalid size: {text!r}") from None
    if amount <= 0:
        raise UsageError(f"invalid size: {text!r}")
    return amount


VOLUME_MODES = ("ro", "rw", "nocopy")


def parse_volume(text: str) -> Mount:
    """HOST:CONTAINER[:MODES], HOST an absolute path (created if missing) or a named volume (created if
    new, and seeded from the image at its first mount unless `nocopy`); MODES ro or rw, and nocopy,
    comma-separated as docker writes them."""
    parts = text.split(":")
    modes = parts[2].split(",") if len(parts) == 3 else []
    if len(parts) not in (2, 3) or any(m not in VOLUME_MODES for m in modes) or len(set(modes)) != len(modes):
        raise UsageError(f"invalid volume {text!r}: expected HOST:CONTAINER[:ro|rw][,nocopy]")
    if "ro" in modes and "rw" in modes:
        raise UsageError(f"invalid volume {text!r}: ro and rw together")
    host, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise UsageError(f"invalid volume {text!r}: the container path must be absolute")
    readonly = "ro" in modes
    if host.startswith("/") and "nocopy" in modes:
        raise UsageError(f"invalid volume {text!r}: nocopy is for named volumes")
    if not host.startswith("/"):
        from engine.service.paths import Paths
        from engine.service.volumes import VolumeError, Volumes

        try:
            volume = Volumes(Paths.default().volumes).create(host)
        except VolumeError as exc:
            raise UsageError(f"invalid volume {text!r}: {exc}") from None
        return Mount(str(volume.mountpoint), os.path.normpath(target), readonly, seed="nocopy" not in modes)
    if not os.path.exists(host):
        os.makedirs(host)
    return Mount(os.path.realpath(host), os.path.normpath(target), readonly)


def anonymous_target(text: str) -> str | None:
    """The container path of docker's anonymous volume form (`-v /data`: one absolute path, no host side),
    or None for HOST:CONTAINER."""
    if ":" in text or not text.startswith("/"):
        return None
    return os.path.normpath(text)


def anonymous_targets(config: dict[str, Any], volumes: list[str], mounts: list[Mount]) -> list[str]:
    """Where a container gets an anonymous volume, as dockerd gives one: each `-v /PATH` and each path
    of the image's VOLUME that no other mount covers, in that order, each once."""
    taken = {m.target for m in mounts}
    wanted = [t for t in map(anonymous_target, volumes) if t is not None]
    for path in config.get("Volumes") or {}:
        if isinstance(path, str) and path.startswith("/"):
            wanted.append(os.path.normpath(path))
    out: list[str] = []
    for target in wanted:
        if target not in taken:
            taken.add(target)
            out.append(target)
    return out


def mount_order(mounts: list[Mount]) -> list[Mount]:
    """Shallower targets first (dockerd's sortMounts), so `/data` never hides a bind at `/data/sub`."""
    return sorted(mounts, key=lambda m: 0 if m.target == "/" else m.target.count("/"))


def read_env_file(path: str) -> list[str]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def merge_env(*layers: list[str]) -> list[str]:
    """Later KEY=VALUE entries win; a bare KEY takes the value from berth's own environment."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, eq, value = item.partition("=")
            if not eq:
                if key not in os.environ:
                    continue
                value = os.environ[key]
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


@dataclass
class RunOptions:
    """`berth run`'s options (and the API's create body) before they are checked against the image."""

    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    volumes: list[str] = field(default_factory=list)
    network: str = "bridge"
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None
    dns: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    expose: list[str] = field(default_factory=list)  # PORT/PROTO exposed beyond the image's (docker's --expose)
    memory: str | None = None
    pids_limit: int | None = None
    cpus: float | None = None
    read_only: bool = False
    init: bool = False
    auto_remove: bool = False
    security_opt: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    restart: str = "no"
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    console_size: tuple[int, int] | None = None


RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


def parse_restart(text: str) -> str:
    """docker's --restart: no, always, unless-stopped, on-failure[:MAX]; checked before anything is created."""
    name, colon, count = text.partition(":")
    if name not in RESTART_POLICIES or (colon and (name != "on-failure" or not count.isdigit() or len(count) > 6)):
        raise UsageError(f"invalid restart policy {text!r}")
    return text


def network_options(options: RunOptions, config: dict[str, Any]) -> dict[str, Any]:
    """The spec's network fields, each checked (the service checks what depends on its state)."""
    plain = not (options.aliases or options.ip or options.dns or options.add_hosts or options.publish)
    if options.network in ("none", "host") and plain:
        return {"network": options.network}  # without importing ipaddress: `--network none` stays fast
    from engine.service import names, ports
    from engine.service.networks import NetworkError, check_name

    try:
        if options.network not in ("none", "host"):
            check_name(options.network)
        elif options.aliases or options.ip:
            raise UsageError("--ip and --network-alias are supported on user-defined networks only")
        publish = list(options.publish)
        exposed = {**(config.get("ExposedPorts") or {}), **dict.fromkeys(options.expose, {})}
        if options.publish_all:
            publish += [f"{p.container_port}/{p.proto}" for p in ports.exposed({"ExposedPorts": exposed})]
        for text in publish:
            ports.parse_publish(text)
        if options.network in ("none", "host"):
            publish = []  # docker discards published ports without a bridge
        return {
            "network": options.network,
            "aliases": [names.check_hostname(a, "network alias") for a in options.aliases],
            "ip": options.ip,
            "dns": [names.parse_dns(d) for d in options.dns],
            "extra_hosts": [list(names.parse_add_host(h)) for h in options.add_hosts],
            "publish": publish,
            "exposed": ports.exposed_keys(exposed) if options.network not in ("none", "host") else [],
        }
    except (NetworkError, names.BadName, ports.PortError) as exc:
        raise UsageError(str(exc)) from None


def build_spec(image: Image, options: RunOptions) -> Spec:
    """The container's spec: the image config's defaults overridden by the options, as docker does."""
    config = image.runtime
    if options.entrypoint is not None:
        entrypoint = [options.entrypoint] if options.entrypoint else []
        cmd = list(options.command)
    else:
        entrypoint = list(config.get("Entrypoint") or [])
        cmd = list(options.command) or list(config.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise UsageError(f"no command specified: image {image.name} has no Entrypoint or Cmd")
    workdir = options.workdir or config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is not an absolute path")
    file_env = [item for path in options.env_files for item in read_env_file(path)]
    if options.memory is not None and parse_bytes(options.memory) < MIN_MEMORY:
        raise UsageError("minimum memory limit allowed is 6MB")
    if options.cpus is not None and options.cpus <= 0:
        raise UsageError("--cpus must be positive")
    if options.pids_limit is not None and options.pids_limit <= 0:
        raise UsageError("--pids-limit must be positive")
    if options.auto_remove and options.restart != "no":
        raise UsageError("conflicting options: --restart and --rm")
    network = network_options(options, config)
    limits = Limits(
        memory=parse_bytes(options.memory) if options.memory else None,
        pids=options.pids_limit,
        cpus=options.cpus,
    )
    return Spec(
        image=image.name,
        image_id=image.id,
        layers=list(image.layers),
        args=args,
        env=merge_env(list(config.get("Env") or []), file_env, options.env),
        cwd=os.path.normpath(workdir),
        user=options.user if options.user is not None else (config.get("User") or ""),
        hostname=options.hostname or "",
        mounts=[parse_volume(v) for v in options.volumes if anonymous_target(v) is None],
        **network,
        read_only=options.read_only,
        init=options.init,
        limits=limits,
        auto_remove=options.auto_remove,
        seccomp=parse_security_opts(options.security_opt),
        labels={**(config.get("Labels") or {}), **options.labels},
        restart=parse_restart(options.restart),
        tty=options.tty,
        open_stdin=options.open_stdin,
        stdin_once=options.stdin_once and options.open_stdin,
        console_size=list(options.console_size) if options.tty and options.console_size else [],
    )


def parse_security_opts(options: list[str]) -> str:
    """`seccomp=unconfined|FILE`, the one security option berth has: "" (the default profile),
    "unconfined", or the profile file's absolute path. The last one given wins."""
    choice = ""
    for text in options:
        key, eq, value = text.partition("=")
        if key != "seccomp" or not eq or not value:
            raise UsageError(f"invalid --security-opt {text!r}: berth supports seccomp=unconfined or seccomp=FILE")
        choice = value if value == "unconfined" else os.path.abspath(value)
    return choice


def parse_signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"invalid signal: {text}") from None
