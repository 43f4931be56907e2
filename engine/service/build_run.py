"""A RUN step: a container of the engine's own kind, whose overlay upper directory is the change.

The container is created and supervised exactly as `berth run` does it (same namespaces,
overlay with the build's layers as lowers and a fresh upper, same capabilities and
no_new_privs, cgroup), with the build's network, user, working directory and environment;
its output goes to the build's progress. What the runtime adds for any container (the
mount points /proc, /sys, /dev and /etc/hosts, /etc/hostname, /etc/resolv.conf when the image
lacks them) is taken back out of the upper directory, as docker's builder does.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from engine.service import image_config as ic
from engine.service.build_state import BuildError, State, chain
from engine.service.dockerfile import DockerfileError, Instruction
from engine.service.layer_diff import is_opaque, is_whiteout

if TYPE_CHECKING:
    from engine.service.builds import Builder

OUTPUT_TAIL = 20
"""Lines of a failing RUN's output repeated in the error."""
RUNTIME_MOUNTPOINTS = ("proc", "sys", "dev", "etc/hostname", "etc/hosts", "etc/resolv.conf")


class RunResult(NamedTuple):
    """What a RUN step left: its exit code, its changes, and how to tear its mounts down."""

    code: int
    changes: Path
    """The upper directory (or, without overlayfs, the whole root) holding what the step changed."""
    cleanup: Callable[[], None]


def exists_in_layers(layer_dirs: list[Path], path: str) -> bool:
    """Whether `path` exists in the stack of unpacked layers (whiteouts and opaque dirs honoured)."""
    parts = path.strip("/").split("/")
    for layer in reversed(layer_dirs):
        for depth in range(1, len(parts) + 1):
            candidate = layer.joinpath(*parts[:depth])
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                break
            if is_whiteout(st):
                return False
            if depth == len(parts):
                return True
            if stat.S_ISDIR(st.st_mode) and is_opaque(str(candidate)):
                return False
        else:
            continue
    return False


def drop_runtime_mountpoints(changes: Path, existed: set[str]) -> None:
    """Remove the empty files and directories the runtime created only to mount over."""
    for path in RUNTIME_MOUNTPOINTS:
        if path in existed:
            continue
        target = changes / path
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(target)
        elif stat.S_ISDIR(st.st_mode) and not os.listdir(target):
            os.rmdir(target)


def run_step(
    layer_digests: list[str],
    layer_dirs: list[Path],
    args: list[str],
    env: list[str],
    *,
    cwd: str,
    user: str,
    network: str,
    on_output: Callable[[bytes], None],
) -> RunResult:
    from engine.service import lifecycle
    from engine.service.images import Image
    from engine.service.specs import RunOptions

    images, containers = lifecycle.stores()
    existed = {p for p in RUNTIME_MOUNTPOINTS if exists_in_layers(layer_dirs, p)}
    image = Image("berth-build", "", "", {}, list(layer_digests))
    options = RunOptions(command=args, entrypoint="", env=env, workdir=cwd, user=user, network=network)
    container = lifecycle.create(images, containers, image, options, None)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def pump() -> None:
        with open(read_end, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                on_output(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = lifecycle.start(images, container, stdio=(devnull, write_end, write_end), forward_signals=True)
    except BaseException:
        containers.delete(container)  # it could not start (an unknown USER, say) or we were interrupted
        raise
    finally:
        os.close(write_end)
        os.close(devnull)
        reader.join()
    changes = container.directory / ("upper" if layer_dirs else "rootfs")
    drop_runtime_mountpoints(changes, existed)

    def cleanup() -> None:
        """The supervisor (this process) has reaped PID 1 and removed its cgroup: only files remain."""
        containers.delete(container)

    return RunResult(code, changes, cleanup)


def run_env(state: State, build_args: dict[str, str]) -> list[str]:
    """RUN's environment: ENV over ARG, docker's proxy build args, and a default PATH."""
    env = ic.env_dict(state.config.get("Env") or [])
    merged = {**state.args, **env}
    for name in ic.PROXY_ARGS & build_args.keys():
        merged.setdefault(name, build_args[name])
    merged.setdefault("PATH", ic.DEFAULT_PATH.partition("=")[2])
    return [f"{k}={v}" for k, v in merged.items()]


def run_instruction(builder: Builder, state: State, instruction: Instruction, prefix: str) -> None:
    """A RUN step: from the cache, or in a container whose upper directory becomes the layer."""
    command = run_command(state, instruction)
    env = run_env(state, builder.options.build_args)
    network = instruction.flags.get("network", "default")
    if network not in ("host", "none", "default"):
        raise DockerfileError(instruction.line, f"RUN --network={network}: use default, none or host")
    network = builder.options.network if network == "default" else network
    keyed_env = sorted(e for e in env if e.partition("=")[0] not in ic.PROXY_ARGS)
    key = chain(state.key, "RUN", command, keyed_env, state.config.get("User"), state.workdir)
    created_by = "RUN " + " ".join(command) + " # buildkit"
    step = builder.reporter.step(f"{prefix} RUN {instruction.args}")
    hit = builder._cached(key)
    if hit is None:
        tail = bytearray()

        def output(data: bytes) -> None:
            step.output(data)
            tail.extend(data)
            del tail[: max(0, len(tail) - 65536)]

        dirs = builder._layer_dirs(state.layers)
        result = run_step(
            [layer.digest for layer in state.layers],
            dirs,
            command,
            env,
            cwd=state.workdir,
            user=state.config.get("User") or "",
            network=network,
            on_output=output,
        )
        try:
            if result.code != 0:
                lines = bytes(tail).decode(errors="replace").splitlines()[-OUTPUT_TAIL:]
                message = f"{prefix} RUN {instruction.args} failed with exit code {result.code}"
                raise BuildError("\n".join([message, *("  " + line for line in lines)]), result.code)
            hit = builder._store_layer(key, result.changes)
        finally:
            result.cleanup()
    else:
        step.cached()
    builder._add_layer(state, key, hit, created_by)
    step.done()


def run_command(state: State, instruction: Instruction) -> list[str]:
    """The exec form as written; the shell form (a heredoc script included) through SHELL."""
    if instruction.exec_form is not None:
        return list(instruction.exec_form)
    if instruction.heredocs:
        first = instruction.heredocs[0]
        if len(instruction.heredocs) == 1 and instruction.args.strip().lstrip("<-\"'").rstrip("\"'") == first.name:
            return [*state.shell, first.body]
        script = instruction.args + "\n" + "".join(f"{h.body}{h.name}\n" for h in instruction.heredocs)
        return [*state.shell, script]
    return [*state.shell, instruction.args]
