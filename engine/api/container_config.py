"""Docker's container-create body translated to the engine's run options, and containers back to docker's JSON.

Only translation: every option is checked by the service (`specs.build_spec`); what Berth
cannot do is refused here with a 400 naming the field, never silently dropped.
"""

from __future__ import annotations

import re
import time
from typing import Any

from engine.api.errors import ApiError
from engine.service.containers import Container, Status
from engine.service.specs import RunOptions
from engine.service.times import human_duration

NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ApiError(400, f"Invalid container name ({name[:300]}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key} must be a list of strings")
    return value


def _publish(host: dict[str, Any]) -> list[str]:
    out = []
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise ApiError(400, "PortBindings must be an object")
    for private, binds in bindings.items():
        for bind in binds or [{}]:
            if not isinstance(bind, dict):
                raise ApiError(400, "PortBindings entries must be objects")
            ip, port = bind.get("HostIp") or "", bind.get("HostPort") or ""
            out.append(f"{ip}:{port}:{private}" if ip else f"{port}:{private}" if port else private)
    return out


def _mounts(host: dict[str, Any]) -> list[str]:
    """HostConfig.Mounts (`--mount`) of type bind or volume, as the service's SOURCE:TARGET[:ro] form."""
    mounts = host.get("Mounts") or []
    if not isinstance(mounts, list):
        raise ApiError(400, "Mounts must be a list")
    out = []
    for mount in mounts:
        if not isinstance(mount, dict):
            raise ApiError(400, "Mounts entries must be objects")
        kind, source, target = mount.get("Type"), mount.get("Source") or "", mount.get("Target") or ""
        if kind not in ("bind", "volume"):
            raise ApiError(501, f"berth's engine API does not implement --mount type={str(kind)[:40]}")
        if not isinstance(source, str) or not isinstance(target, str) or not target or ":" in source + target:
            raise ApiError(400, "invalid mount: Target must be given, and neither Source nor Target may hold ':'")
        if kind == "volume" and not source:
            if mount.get("ReadOnly") or (mount.get("VolumeOptions") or {}) != {}:
                raise ApiError(501, "berth's engine API does not implement options on anonymous volumes")
            out.append(target)  # an anonymous volume, as `-v /PATH`
            continue
        if not source:
            raise ApiError(400, 'invalid mount config for type "bind": field Source must not be empty')
        if kind == "bind" and not source.startswith("/"):
            raise ApiError(400, f"invalid mount config for type \"bind\": invalid mount path: '{source[:300]}'")
        volume_options = mount.get("VolumeOptions") or {}
        if not isinstance(volume_options, dict):
            raise ApiError(400, "VolumeOptions must be an object")
        nocopy = kind == "volume" and bool(volume_options.get("NoCopy"))
        modes = ",".join(m for m, wanted in (("ro", mount.get("ReadOnly")), ("nocopy", nocopy)) if wanted)
        out.append(f"{source}:{target}{':' + modes if modes else ''}")
    return out


def _exposed(body: dict[str, Any]) -> list[str]:
    """Config.ExposedPorts (`--expose`, and the image's, which the CLI does not repeat) as PORT/PROTO."""
    exposed = body.get("ExposedPorts") or {}
    if not isinstance(exposed, dict):
        raise ApiError(400, "ExposedPorts must be an object whose keys are PORT/PROTO")
    out = []
    for key in exposed:
        port, _, proto = key.partition("/")
        if not port.isdigit() or len(port) > 5 or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
            raise ApiError(400, f"invalid exposed port {key[:100]!r}: expected PORT[/tcp|udp|sctp]")
        out.append(f"{int(port)}/{proto or 'tcp'}")
    return out


def _anonymous(body: dict[str, Any]) -> list[str]:
    """Config.Volumes (`-v /PATH` as the CLI sends it): the paths that get anonymous volumes."""
    volumes = body.get("Volumes") or {}
    if not isinstance(volumes, dict):
        raise ApiError(400, "Volumes must be an object whose keys are container paths")
    for path in volumes:
        if not path.startswith("/") or ":" in path:
            raise ApiError(400, f"invalid volume path {path[:300]!r}: a container path must be absolute")
    return list(volumes)


def run_options(body: Any) -> RunOptions:
    """The run options a create body describes."""
    if not isinstance(body, dict):
        raise ApiError(400, "the container config must be a JSON object")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise ApiError(400, "HostConfig must be an object")
    entrypoint = _strings(body, "Entrypoint") if body.get("Entrypoint") is not None else None
    command = _strings(body, "Cmd")
    entrypoint_text: str | None = None
    if entrypoint:
        command, entrypoint_text = entrypoint[1:] + command, entrypoint[0]
    elif entrypoint is not None:
        entrypoint_text = ""
    network = host.get("NetworkMode") or "default"
    restart = host.get("RestartPolicy") or {}
    policy = restart.get("Name") or "no"
    if policy == "on-failure" and restart.get("MaximumRetryCount"):
        policy = f"on-failure:{int(restart['MaximumRetryCount'])}"
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ApiError(400, "Labels must map strings to strings")
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict) or not all(isinstance(e, dict) for e in endpoints.values()):
        raise ApiError(400, "NetworkingConfig.EndpointsConfig must map networks to objects")
    endpoint = endpoints.get(network) or {}
    aliases = endpoint.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ApiError(400, "Aliases must be a list of strings")
    ip = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None
    pids = host.get("PidsLimit")
    return RunOptions(
        command=command,
        entrypoint=entrypoint_text,
        env=_strings(body, "Env"),
        workdir=body.get("WorkingDir") or None,
        user=body.get("User") or None,
        hostname=body.get("Hostname") or None,
        volumes=_strings(host, "Binds") + _mounts(host) + _anonymous(body),
        network="bridge" if network == "default" else network,
        publish=_publish(host),
        publish_all=bool(host.get("PublishAllPorts")),
        expose=_exposed(body),
        memory=str(host["Memory"]) if host.get("Memory") else None,
        pids_limit=pids if isinstance(pids, int) and pids > 0 else None,
        cpus=host["NanoCpus"] / 1e9 if host.get("NanoCpus") else None,
        read_only=bool(host.get("ReadonlyRootfs")),
        init=bool(host.get("Init")),
        auto_remove=bool(host.get("AutoRemove")),
        labels=dict(labels),
        restart=policy,
        dns=_strings(host, "Dns"),
        aliases=list(aliases),
        ip=ip,
        add_hosts=_strings(host, "ExtraHosts"),
        tty=bool(body.get("Tty")),
        open_stdin=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")),
        console_size=_console_size(host),
    )


def _console_size(host: dict[str, Any]) -> tuple[int, int] | None:
    """HostConfig.ConsoleSize ([rows, columns]): the TTY's size from its first moment, before any resize."""
    size = host.get("ConsoleSize")
    if size is None:
        return None
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 0xFFFF for n in size)
    ):
        raise ApiError(400, "ConsoleSize must be two numbers of rows and columns from 0 to 65535")
    return size[0], size[1]


def familiar(image: str) -> str:
    """docker's short form of an image name: no docker.io/library/, no :latest."""
    return image.removeprefix("docker.io/library/").removeprefix("docker.io/").removesuffix(":latest")


def docker_state(container: Container) -> str:
    """dockerd's name for the state; "restarting" for an exited container that this service's restart pass
    will start again (`restarts.waiting`)."""
    from engine.service import restarts
    from engine.service.listing import state_name

    return "restarting" if restarts.waiting(container) else state_name(container)


def status_text(container: Container, state: str) -> str:
    now = time.time()
    if state == "restarting":
        return f"Restarting ({container.exit_code}) {human_duration(now - (container.finished_at or now))} ago"
    if container.status is Status.RUNNING:
        return f"Up {human_duration(now - (container.started_at or now))}"
    if container.status is Status.STOPPED:
        return f"Exited ({container.exit_code}) {human_duration(now - (container.finished_at or now))} ago"
    return "Created"


def summary(container: Container, ports: list[Any]) -> dict[str, Any]:
    """One row of GET /containers/json."""
    from engine.service.lifecycle import mount_docs

    spec = container.spec
    state = docker_state(container)
    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": familiar(spec.image),
        "ImageID": spec.image_id,
        "Command": " ".join(f"'{a}'" if " " in a and i else a for i, a in enumerate(spec.args)),
        "Created": int(container.created),
        "Ports": [
            {"IP": b.host_ip or "0.0.0.0", "PrivatePort": b.container_port, "PublicPort": b.host_port, "Type": b.proto}
            for b in ports
        ]
        + [{"PrivatePort": int(port), "Type": proto} for port, proto in _unpublished(spec.exposed, ports)],
        "Labels": spec.labels,
        "State": state,
        "Status": status_text(container, state),
        "HostConfig": {"NetworkMode": "default" if spec.network == "bridge" else spec.network},
        "NetworkSettings": {"Networks": {spec.network: {}}},
        "Mounts": mount_docs(spec),
    }


def _unpublished(exposed: list[str], ports: list[Any]) -> list[tuple[str, str]]:
    """Exposed ports no binding publishes, as (port, proto): dockerd lists them without a host side."""
    published = {f"{b.container_port}/{b.proto}" for b in ports}
    keys = (key.partition("/") for key in exposed if key not in published)
    return [(port, proto) for port, _, proto in keys]


def inspect_doc(container: Container) -> dict[str, Any]:
    """GET /containers/{id}/json: the service's docker-shaped inspect plus what docker's CLI reads."""
    from engine.service.lifecycle import inspect

    doc = inspect(container)
    spec = container.spec
    doc["Path"], doc["Args"] = spec.args[0], spec.args[1:]
    doc["State"].update({"Paused": False, "Restarting": False, "Dead": False})
    if docker_state(container) == "restarting":
        doc["State"].update({"Status": "restarting", "Running": True, "Restarting": True})
    doc["RestartCount"] = container.restart_count
    doc["Driver"] = "overlay"
    doc["Platform"] = "linux"
    doc["Config"].update(
        {
            "Image": familiar(spec.image),
            "Labels": spec.labels,
            "Tty": spec.tty,
            "OpenStdin": spec.open_stdin,
            "StdinOnce": spec.stdin_once,
            "AttachStdin": spec.stdin_once,
            "AttachStdout": True,
            "AttachStderr": True,
            "Entrypoint": None,
        }
    )
    doc["HostConfig"]["RestartPolicy"] = _restart_policy(spec.restart)
    # clients (docker-py) read logs only from drivers they know readable; berth's log file is, as json-file's
    doc["HostConfig"]["LogConfig"] = {"Type": "json-file", "Config": {}}
    return doc


def _restart_policy(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}
