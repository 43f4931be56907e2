"""The container lifecycle as explicit steps: create, start, exec, stop, kill, remove; and image removal.

Both front doors (the `berth` commands, and later the engine API) call these functions
and nothing else for containers: each takes the stores it works on, checks the state
machine (`containers.py`), records every step there, and leaves the system calls to the
runtime. Signals go through pidfds checked against the recorded start time, so a reused
pid never receives a signal meant for a container that has already gone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.runtime import cgroups, process
from engine.runtime.rootfs import Mount
from engine.service import seccomp
from engine.service.containers import Container, ContainerStateError, ContainerStore, Spec, Status, remove_tree
from engine.service.images import Image, ImageNotFound, ImageStore, ensure_layers, prune_layers
from engine.service.paths import Paths
from engine.service.specs import RunOptions, anonymous_targets, build_spec, merge_env, mount_order

if TYPE_CHECKING:
    from engine.runtime.relay import Relay
    from engine.runtime.supervisor import Stdio
    from engine.service.attachments import Joined

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


class HostUnsupported(RuntimeError):
    """This user or kernel cannot run containers (exit code 125)."""


def require_host(what: str) -> None:
    """Refuse early, with the reason, where containers cannot run at all."""
    if os.geteuid() != 0:
        raise HostUnsupported(
            f"{what} needs root: it creates namespaces, mounts overlayfs and writes cgroups "
            "(run it with sudo; rootless containers are not supported)"
        )
    missing = [ns for ns in NAMESPACES if not os.path.exists(f"/proc/self/ns/{ns}")]
    if missing:
        raise HostUnsupported(f"this kernel lacks {', '.join(missing)} namespaces (CONFIG_{missing[0].upper()}_NS)")


def stores(paths: Paths | None = None) -> tuple[ImageStore, ContainerStore]:
    """The image and container stores under `paths` (default: $BERTH_ROOT)."""
    paths = paths or Paths.default()
    return ImageStore(paths), ContainerStore(paths.containers)


def create(
    images: ImageStore, containers: ContainerStore, image: Image, options: RunOptions, name: str | None
) -> Container:
    """A new container in the created state, its layers unpacked; its hostname defaults as docker's does.

    That is the short id, or on the host network the host's own name.
    """
    spec = build_spec(image, options)
    program = seccomp.program(images.paths, spec.seccomp)
    ensure_layers(images, image)
    container = containers.create(spec, name)
    seccomp.save(container.directory, program)
    anonymous = anonymous_targets(image.runtime, options.volumes, spec.mounts)
    if anonymous:
        _add_anonymous_volumes(container, anonymous)
    if not spec.hostname:
        spec.hostname = os.uname().nodename if spec.network == "host" else container.id[:12]
    if anonymous or not options.hostname:
        container.save()
    return container


def _add_anonymous_volumes(container: Container, targets: list[str]) -> None:
    """A new volume for each target, seeded from the image at the first start as a named one is.

    Made once the container exists, so a create that fails (a name in use) leaves no volume behind.
    """
    from engine.service.volumes import Volumes

    volumes = Volumes(Paths.default().volumes)
    spec = container.spec
    for target in targets:
        volume = volumes.create()
        spec.anonymous.append(volume.name)
        spec.mounts.append(Mount(str(volume.mountpoint), target, seed=True))
    spec.mounts = mount_order(spec.mounts)


def remove_anonymous_volumes(containers: ContainerStore, container: Container) -> None:
    """The container's anonymous volumes, once it is gone; one another container mounts is kept, as dockerd
    keeps it."""
    from engine.service.volumes import VolumeError, VolumeInUse, VolumeNotFound, Volumes

    volumes = Volumes(Paths.default().volumes)
    for name in container.spec.anonymous:
        with suppress(VolumeInUse, VolumeNotFound, VolumeError):
            volumes.remove(name, containers)


def _hosts_file(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"


def etc_files(container: Container) -> dict[str, str]:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf, bound in by the runtime.

    On a bridge network the network service has written /etc/hosts already (and keeps it up to
    date as containers come and go); resolv.conf holds the host's nameservers minus loopback ones.
    """
    spec = container.spec
    files = {"hostname": spec.hostname + "\n"}
    if not spec.bridged:
        files["hosts"] = _hosts_file(spec.hostname)
    if spec.network == "host":
        try:
            files["resolv.conf"] = Path("/etc/resolv.conf").read_text()
        except OSError:
            pass
    elif spec.bridged:
        from engine.service.names import resolv_text

        files["resolv.conf"] = resolv_text(spec.dns)
    out = {}
    for name, text in files.items():
        path = container.directory / name
        path.write_text(text)
        out[name] = str(path)
    if spec.bridged:
        out["hosts"] = str(container.directory / "hosts")
    return out


def join_network(container: Container) -> Joined:
    """Reserve ports and wire the container's network namespace (before PID 1 exists)."""
    from engine.service import attachments, ports
    from engine.service.networks import Networks

    spec = container.spec
    request = attachments.Request(
        network=spec.network,
        name=container.name,
        hostname=spec.hostname,
        hosts_file=str(container.directory / "hosts"),
        aliases=spec.aliases,
        ip=spec.ip,
        extra_hosts=spec.extra_hosts,
        publish=[p for text in spec.publish for p in ports.parse_publish(text)],
        connected=spec.connected,
    )
    return attachments.join(Networks(Paths.default().networks), container.id, request)


def leave_network(container: Container) -> None:
    from engine.service import attachments
    from engine.service.networks import Networks

    attachments.leave(Networks(Paths.default().networks), container.id)


def start(
    images: ImageStore,
    container: Container,
    *,
    stdio: Stdio | None,
    forward_signals: bool,
    on_started: Callable[[], None] = lambda: None,
    keep_exit: bool = False,
    output_done: Callable[[], None] = lambda: None,
    terminal: int = -1,
    terminal_input: bool = False,
    log_output: bool = False,
) -> int:
    """Supervise the container to completion and return its exit code (raises StartError).

    The steps follow the state machine: created -> (cgroup, fork, exec confirmed) running
    -> (wait, OOM check) stopped; with --rm the directory goes at the end (`keep_exit`: its exit code
    is recorded first, for a waiter elsewhere, as the API's `wait?condition=removed`); `output_done`
    is called once PID 1 has been reaped, before the exit is recorded, so its output is all logged.
    A container with a TTY may be relayed to a local `terminal` too (its size followed, with
    `terminal_input` what is typed on it), as `berth run -t` does. With `log_output` (a foreground
    `berth run`) the output goes through a copier that shows it on our stdout and stderr and appends
    it to the container's log (`output.Capture`), so `logs` shows it afterwards as docker's does;
    not for `--rm`, whose log would go with the container (no process added to its start-up).
    """
    from engine.runtime import supervisor
    from engine.runtime.init import SETUP_FAILED, StartError

    layers = [images.paths.layer(digest) for digest in container.spec.layers]
    cgroup = cgroups.for_container(container.id)
    me = os.getpid()
    cgroup.create(container.spec.limits)
    container.update(cgroup=cgroup.to_json(), supervisor_pid=me, supervisor_start=process.start_time(me))
    target: list[int] = []
    relay = None
    joined = None
    if log_output and not container.spec.auto_remove:
        stdio, output_done = _logged(container, stdio)
    try:
        if container.spec.tty or container.spec.open_stdin:
            relay = _relay(container)
            base = stdio if stdio is not None else (0, 1, 2)
            stdio = (relay.child_stdin if relay.child_stdin >= 0 else base[0], base[1], base[2])
        # PID 1 shares our terminal (and so gets ^C from it directly) only when its stdin is one.
        shares_terminal = relay is None and os.isatty(stdio[0] if stdio is not None else 0)
        flush = supervisor.relay_signals(target, shares_terminal) if forward_signals else (lambda: None)
        if container.spec.bridged:
            joined = join_network(container)
        netns_fd = joined.namespace_fd if joined else -1
        files = etc_files(container)
        program = seccomp.load(container.directory)
        console_fd = relay.console_fd if relay else -1
        pid = supervisor.spawn(
            container.spec, layers, container.directory, files, cgroup, stdio, netns_fd, program, console_fd
        )
        if relay is not None:
            relay.started()
            if terminal >= 0:
                relay.follow_terminal(terminal, terminal_input)
    except BaseException as exc:
        code, error = (exc.code, exc.message) if isinstance(exc, StartError) else (SETUP_FAILED, str(exc))
        output_done()
        container.transition(Status.STOPPED, exit_code=code, error=error, finished_at=time.time())
        container.record("die", exitCode=code)
        if relay is not None:
            relay.close()
        _cleanup(container, cgroup, joined)
        raise
    if joined is not None:
        joined.release_namespace()
    container.transition(Status.RUNNING, pid=pid, pid_start=process.start_time(pid), started_at=time.time())
    container.record("start")
    target.append(pid)
    flush()
    on_started()
    if relay is None:
        code = supervisor.wait(pid)
    else:
        try:
            code = relay.serve(pid, stdio[1] if stdio is not None else 1)
        finally:
            relay.close()
    output_done()
    oom = cgroup.oom_killed()
    try:
        container.transition(Status.STOPPED, exit_code=code, oom_killed=oom, finished_at=time.time())
    except FileNotFoundError:
        pass  # removed with `rm -f` while we waited
    container.record("die", exitCode=code)
    if keep_exit and container.spec.auto_remove:
        ContainerStore(container.directory.parent).record_exit(container.id, code)
    _cleanup(container, cgroup, joined)
    return code


def _logged(container: Container, stdio: Stdio | None) -> tuple[Stdio, Callable[[], None]]:
    """`stdio` with stdout and stderr replaced by a copier's pipes that echo to ours and append to the log."""
    from engine.runtime import output

    log = os.open(container.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        capture = output.Capture.start(log, echo=True)
    finally:
        os.close(log)
    return (stdio[0] if stdio is not None else 0, capture.stdout, capture.stderr), capture.finish


def _relay(container: Container) -> Relay:
    """The relay a container with a TTY or an open stdin gets instead of a bare wait (`runtime/relay.py`)."""
    from engine.runtime.relay import Relay

    spec = container.spec
    return Relay.open(str(container.directory), tty=spec.tty, stdin=spec.open_stdin, stdin_once=spec.stdin_once)


def _cleanup(container: Container, cgroup: cgroups.Cgroup, joined: Joined | None = None) -> None:
    """After exit: the network attachment and the cgroup go; with --rm, the whole container directory too."""
    if container.spec.bridged:
        leave_network(container)
    if joined is not None:
        joined.release_namespace()
        for sock in joined.sockets:
            sock.close()
    try:
        cgroup.destroy()
    except OSError:
        pass
    if container.spec.auto_remove:
        try:
            remove_tree(container.directory)
        except OSError:
            return
        container.record("destroy")
        if container.spec.anonymous:
            remove_anonymous_volumes(ContainerStore(container.directory.parent), container)


def start_detached(images: ImageStore, container: Container) -> None:
    """Start the container under a supervisor daemon; return once PID 1 has exec'd (or raise)."""
    from engine.runtime import supervisor

    def body(stdio: Stdio, started: Callable[[], None], finished: Callable[[], None]) -> None:
        start(
            images,
            container,
            stdio=stdio,
            forward_signals=False,
            on_started=started,
            keep_exit=True,
            output_done=finished,
        )

    supervisor.daemonize(container.log_file, body)


def prepare_restart(container: Container) -> None:
    """An exited container back to created, so `start` can run it again (its filesystem changes kept)."""
    if container.status is Status.STOPPED:
        container.transition(Status.CREATED, pid=None, pid_start=None, supervisor_pid=None, supervisor_start=None)


def send_signal(container: Container, sig: int) -> bool:
    """Signal the container's PID 1; False if it is not running."""
    if container.status is not Status.RUNNING:
        return False
    sent = process.send_signal(container.pid, container.pid_start, sig)
    if sent:
        container.record("kill", signal=sig)
    return sent


def kill(container: Container, sig: int) -> None:
    """`kill` by hand: as dockerd, the container counts as stopped by the user from now on (marked before the
    signal, so no restart pass sees the exit first), whatever the signal."""
    from engine.service.restarts import mark_stopped_by_user

    if container.status is Status.RUNNING:
        mark_stopped_by_user(container)
    if not send_signal(container, sig):
        raise ContainerStateError(f"container {container.name} is not running")


def wait_stopped(container: Container, timeout: float) -> Container:
    """Wait for PID 1, then its supervisor (which writes the exit code), to be gone."""
    process.wait_gone(
        [(container.pid, container.pid_start), (container.supervisor_pid, container.supervisor_start)], timeout
    )
    with suppress(FileNotFoundError):
        return Container.load(container.directory)
    return container


def stop(container: Container, timeout: float) -> Container:
    """SIGTERM, then SIGKILL after `timeout` seconds, as `docker stop` does."""
    from engine.service.restarts import mark_stopped_by_user

    mark_stopped_by_user(container)  # its restart policy no longer applies, even between two restarts
    if not container.is_running():
        return container
    container.record("kill", signal=int(signal.SIGTERM))
    process.terminate(container.pid, container.pid_start, timeout)
    stopped = wait_stopped(container, 10)
    container.record("stop")
    return stopped


def remove(containers: ContainerStore, container: Container, force: bool, volumes: bool = False) -> None:
    """Remove the container (killed first with `force`); with `volumes` its anonymous volumes too (`rm -v`).

    Marked as stopped by the user first, as dockerd's rm kills by hand: the API's restart pass must not
    start it again while its directory goes.
    """
    from engine.service.restarts import mark_stopped_by_user

    if container.is_running() or container.supervised():
        if not force:
            raise ContainerStateError(
                f"cannot remove container {container.name}: it is running (stop it first, or use rm -f)"
            )
        mark_stopped_by_user(container)
        send_signal(container, signal.SIGKILL)
    elif container.spec.restart != "no":
        mark_stopped_by_user(container)
        container = wait_stopped(container, 10)
    if container.cgroup:
        with suppress(OSError):
            cgroups.from_json(container.cgroup).destroy()
    containers.delete(container)
    if volumes:
        remove_anonymous_volumes(containers, container)


def exec_in(
    container: Container,
    args: list[str],
    *,
    env: list[str],
    user: str | None,
    workdir: str | None,
    interactive: bool = False,
    console_fd: int = -1,
    console_size: list[int] | None = None,
) -> int:
    """Run `args` in the running container with its user, env and cwd unless overridden; its exit code.

    With `console_fd` the process gets a terminal of its own whose master is sent over that socket.
    Recorded as docker's `exec_start: ARGS` and `exec_die` (with the exit code) events.
    """
    from engine.runtime import nsenter

    if not container.is_running() or container.pid is None:
        raise ContainerStateError(f"container {container.name} is not running")
    spec = container.spec
    container.record(f"exec_start: {' '.join(args)}")
    code = nsenter.exec_in(
        container.pid,
        cgroups.from_json(container.cgroup) if container.cgroup else None,
        args,
        env=merge_env(spec.env, env),
        user=user if user is not None else spec.user,
        cwd=workdir or spec.cwd,
        hostname=spec.hostname,
        interactive=interactive,
        seccomp=seccomp.load(container.directory),
        console_fd=console_fd,
        console_size=console_size,
    )
    container.record("exec_die", exitCode=code)
    return code


def remove_images(images: ImageStore, containers: ContainerStore, names: list[str], force: bool) -> Iterator[str]:
    """Untag each image (yielding its store name), then delete unpacked layers nothing needs.

    An image a container uses stays unless `force`.
    """
    all_containers = containers.list()
    for name in names:
        ref = images.find(name)
        if ref is None:
            raise ImageNotFound(f"no such image: {name}")
        image = images.resolve(ref)
        users = [c.name for c in all_containers if c.spec.image_id == image.id]
        if users and not force:
            raise ContainerStateError(f"image {ref} is used by container(s) {', '.join(users)} (rm them, or rmi -f)")
        removed = images.remove(ref)
        images.record("untag", image.id, name=image.id)
        if not any(_same_image(images, other, image.id) for other in images.names()):
            images.record("delete", image.id, name=image.id)
        yield removed
    prune_layers(images, {d for c in all_containers for d in c.spec.layers})


def _same_image(images: ImageStore, name: str, image_id: str) -> bool:
    try:
        return images.resolve(name).id == image_id
    except (LookupError, ValueError):
        return False


def inspect(container: Container) -> dict[str, Any]:
    """Docker-shaped inspect output, so scripts written for `docker inspect` mostly work."""
    spec = container.spec
    mounts = mount_docs(spec)

    def iso(ts: float | None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "0001-01-01T00:00:00Z"

    return {
        "Id": container.id,
        "Name": "/" + container.name,
        "Created": iso(container.created),
        "Image": spec.image_id,
        "State": {
            "Status": {"created": "created", "running": "running", "stopped": "exited"}[container.status.value],
            "Running": container.status is Status.RUNNING,
            "Pid": container.pid if container.status is Status.RUNNING else 0,
            "ExitCode": container.exit_code or 0,
            "OOMKilled": container.oom_killed,
            "Error": container.error,
            "StartedAt": iso(container.started_at),
            "FinishedAt": iso(container.finished_at),
        },
        "Config": {
            "Image": spec.image,
            "Cmd": spec.args,
            "Env": spec.env,
            "WorkingDir": spec.cwd,
            "User": spec.user,
            "Hostname": spec.hostname,
        },
        "HostConfig": {
            "Memory": spec.limits.memory or 0,
            "PidsLimit": spec.limits.pids,
            "NanoCpus": int((spec.limits.cpus or 0) * 1e9),
            "ReadonlyRootfs": spec.read_only,
            "NetworkMode": spec.network,
            "Binds": [
                f"{d.get('Name') or d['Source']}:{d['Destination']}{'' if d['RW'] else ':ro'}"
                for d in mounts
                if d.get("Name") not in spec.anonymous
            ],
            "AutoRemove": spec.auto_remove,
            "Init": spec.init,
            "SecurityOpt": [f"seccomp={spec.seccomp}"] if spec.seccomp else None,
        },
        "Mounts": mounts,
        "NetworkSettings": _network_settings(container),
    }


def mount_docs(spec: Spec) -> list[dict[str, Any]]:
    """The container's mounts as dockerd describes them: a volume (named or anonymous) by its name and
    driver, anything else as a bind."""
    if not spec.mounts:
        return []
    volumes = str(Paths.default().volumes)
    out: list[dict[str, Any]] = []
    for m in spec.mounts:
        directory, data = os.path.split(m.source)
        parent, name = os.path.split(directory)
        if data == "_data" and parent == volumes:
            doc = {"Type": "volume", "Name": name, "Source": m.source, "Destination": m.target, "Driver": "local"}
            out.append({**doc, "Mode": "", "RW": not m.readonly, "Propagation": ""})
        else:
            doc = {"Type": "bind", "Source": m.source, "Destination": m.target, "Mode": ""}
            out.append({**doc, "RW": not m.readonly, "Propagation": "rprivate"})
    return out


def _network_settings(container: Container) -> dict[str, Any]:
    if not container.spec.bridged:
        return {"Ports": {}, "Networks": {container.spec.network: {}}, "IPAddress": ""}
    from engine.service.attachments import network_settings
    from engine.service.networks import Networks

    return network_settings(Networks(Paths.default().networks), container.id, container.spec)
