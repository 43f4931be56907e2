"""Which seccomp filter a container gets: docker's default, none (`unconfined`), or a profile file.

A profile is a document in docker's JSON format (`defaultAction`, `defaultErrnoRet`,
`architectures` or `archMap`, `syscalls` with `names`, `action`, `errnoRet`, `args`,
`includes`/`excludes` on `caps`, `arches` and `minKernel`). It is read and checked here
before anything is created: a file that is not a regular file, is larger than 1 MiB, is
not JSON, or holds a field of the wrong type or range is refused with the reason.
Rules are then chosen as docker chooses them (for this machine's architecture, kernel and
the container's capabilities) and compiled by the runtime. A well-formed syscall name
this libseccomp does not know is skipped, as docker and runc skip it, so that one profile
serves several kernels and architectures.

The default profile's program is compiled once per machine and kept in
`$BERTH_ROOT/seccomp/` (compiling takes tens of milliseconds); each container keeps its
own copy as `seccomp.bpf` in its directory, which `berth exec` applies too.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from engine.runtime import seccomp as runtime
from engine.service.paths import Paths

UNCONFINED = "unconfined"
MAX_PROFILE_BYTES = 1 << 20
MAX_NAMES = 20_000
PROGRAM_FILE = "seccomp.bpf"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_ACTIONS = {
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_KILL": "kill_thread",
    "SCMP_ACT_KILL_THREAD": "kill_thread",
    "SCMP_ACT_KILL_PROCESS": "kill_process",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_TRACE": "trace",
    "SCMP_ACT_LOG": "log",
}
_EPERM = 1
# platform.machine() -> (Go's name, as profiles' `arches` use it; libseccomp's, as `archMap` uses it)
_MACHINES = {
    "x86_64": ("amd64", "X86_64"),
    "aarch64": ("arm64", "AARCH64"),
    "s390x": ("s390x", "S390X"),
    "riscv64": ("riscv64", "RISCV64"),
    "ppc64le": ("ppc64le", "PPC64LE"),
}


class ProfileError(ValueError):
    """A seccomp profile berth cannot use; the container is not created."""


def _fail(where: str, problem: str) -> ProfileError:
    return ProfileError(f"seccomp profile: {where}: {problem}")


def read_profile(path: str) -> dict[str, Any]:
    """The JSON document in `path`: a regular file of at most MAX_PROFILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ProfileError(f"seccomp profile {path}: {exc.strerror}") from None
    except ValueError:
        raise ProfileError("seccomp profile: the path holds a NUL byte") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProfileError(f"seccomp profile {path}: not a regular file")
        data = b""
        while len(data) <= MAX_PROFILE_BYTES and (chunk := os.read(fd, MAX_PROFILE_BYTES + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"seccomp profile {path}: larger than {MAX_PROFILE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise ProfileError(f"seccomp profile {path}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"seccomp profile {path}: not a JSON object")
    return doc


def _integer(value: Any, where: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise _fail(where, f"expected an integer from 0 to {limit}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value):
        raise _fail(where, "expected a list of short strings")
    return value


def _action(doc: dict[str, Any], key: str, errno_key: str, where: str) -> tuple[str, int]:
    name = doc.get(key)
    if name not in _ACTIONS:
        raise _fail(where, f"{key} must be one of {', '.join(_ACTIONS)}")
    action = _ACTIONS[name]
    default = _EPERM if action == "errno" else 0
    data = doc.get(errno_key)
    return action, default if data is None else _integer(
        data, f"{where}.{errno_key}", 4095 if action == "errno" else 0xFFFF
    )


def _version(text: Any, where: str) -> tuple[int, int]:
    parts = text.split(".") if isinstance(text, str) and len(text) <= 16 else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise _fail(where, "expected a kernel version MAJOR.MINOR")
    return int(parts[0]), int(parts[1])


def _kernel() -> tuple[int, int]:
    numbers = os.uname().release.split("-")[0].split(".")
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 and numbers[1].isdigit() else 0


def _applies(rule: dict[str, Any], where: str, caps: frozenset[str], arch: str) -> bool:
    """docker's rule: every `includes` condition holds and no `excludes` condition does."""
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if not isinstance(includes, dict) or not isinstance(excludes, dict):
        raise _fail(where, "includes and excludes must be objects")
    if "minKernel" in excludes:
        raise _fail(f"{where}.excludes", "minKernel is only allowed in includes")
    arches = _strings(includes.get("arches"), f"{where}.includes.arches")
    needed = _strings(includes.get("caps"), f"{where}.includes.caps")
    minimum = _version(includes["minKernel"], where) if includes.get("minKernel") is not None else (0, 0)
    not_arches = _strings(excludes.get("arches"), f"{where}.excludes.arches")
    not_caps = _strings(excludes.get("caps"), f"{where}.excludes.caps")
    if (arches and arch not in arches) or not set(needed) <= caps or _kernel() < minimum:
        return False
    return arch not in not_arches and not caps & set(not_caps)


def _conditions(args: Any, where: str) -> tuple[runtime.Condition, ...]:
    if args is None:
        return ()
    if not isinstance(args, list) or len(args) > 6:
        raise _fail(where, "args must be a list of at most 6 comparisons")
    out = []
    for number, arg in enumerate(args):
        here = f"{where}.args[{number}]"
        op = arg.get("op") if isinstance(arg, dict) else None
        if not isinstance(op, str) or op.removeprefix("SCMP_CMP_") not in runtime.OPERATORS:
            raise _fail(here, "op must be one of SCMP_CMP_" + ", SCMP_CMP_".join(runtime.OPERATORS))
        out.append(
            runtime.Condition(
                _integer(arg.get("index"), f"{here}.index", 5),
                op.removeprefix("SCMP_CMP_"),
                _integer(arg.get("value", 0), f"{here}.value", (1 << 64) - 1),
                _integer(arg.get("valueTwo", 0), f"{here}.valueTwo", (1 << 64) - 1),
            )
        )
    return tuple(out)


def _architectures(doc: dict[str, Any], native: str) -> tuple[str, ...]:
    listed, mapped = doc.get("architectures"), doc.get("archMap")
    if listed and mapped:
        raise _fail("architectures", "give architectures or archMap, not both")
    names: list[str] = [native]
    for entry in mapped or []:
        if not isinstance(entry, dict):
            raise _fail("archMap", "expected a list of objects")
        if entry.get("architecture") == f"SCMP_ARCH_{native}":
            names += _strings(entry.get("subArchitectures"), "archMap.subArchitectures")
    names += _strings(listed, "architectures")
    if not all(name.startswith("SCMP_ARCH_") for name in names[1:]):
        raise _fail("architectures", "names start with SCMP_ARCH_")
    return tuple(dict.fromkeys(name.removeprefix("SCMP_ARCH_") for name in names))


def to_filter(doc: dict[str, Any], caps: frozenset[str], machine: str | None = None) -> runtime.Filter:
    """The filter a profile gives a container holding `caps` on this machine (raises ProfileError)."""
    arch, native = _MACHINES.get(machine or os.uname().machine, (machine, (machine or "").upper()))
    default_action, default_data = _action(doc, "defaultAction", "defaultErrnoRet", "defaultAction")
    if doc.get("listenerPath") or doc.get("flags"):
        raise _fail("listenerPath/flags", "seccomp agents and filter flags are not supported")
    entries = doc.get("syscalls") or []
    if not isinstance(entries, list):
        raise _fail("syscalls", "expected a list")
    rules: list[runtime.Rule] = []
    count = 0
    for index, entry in enumerate(entries):
        where = f"syscalls[{index}]"
        if not isinstance(entry, dict):
            raise _fail(where, "expected an object")
        if entry.get("name") and entry.get("names"):
            raise _fail(where, "give name or names, not both")
        names = [entry["name"]] if isinstance(entry.get("name"), str) else entry.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) and n and set(n) <= _NAME_CHARS for n in names):
            raise _fail(where, "names must be syscall names (lowercase letters, digits and _)")
        if any(len(n) > 64 for n in names) or (count := count + len(names)) > MAX_NAMES:
            raise _fail(where, f"too many or too long syscall names (at most {MAX_NAMES} of 64 characters)")
        action, data = _action(entry, "action", "errnoRet", where)
        conditions = _conditions(entry.get("args"), where)
        if not _applies(entry, where, caps, arch or ""):
            continue
        if (action, data) == (default_action, default_data):
            continue  # the default already does it (libseccomp refuses such rules)
        rules += [runtime.Rule(name, action, data, conditions) for name in names]
    return runtime.Filter(default_action, default_data, _architectures(doc, native), tuple(rules))


def container_capabilities() -> frozenset[str]:
    from engine.runtime.init import DEFAULT_CAPABILITIES
    from engine.runtime.syscalls import CAPABILITIES

    return frozenset(name for name, number in CAPABILITIES.items() if number in DEFAULT_CAPABILITIES)


def _default_program(paths: Paths) -> bytes:
    """The default profile's program, compiled on the first run on this machine and kernel."""
    from engine.service.seccomp_profile import default_profile

    profile, caps = default_profile(), container_capabilities()
    uname = os.uname()
    # The file starts with everything the program depends on, one JSON line, checked on every read
    # (hashing it instead would import hashlib, a few milliseconds on every run).
    key = json.dumps([profile, sorted(caps), uname.machine, uname.release], sort_keys=True).encode() + b"\n"
    cached = paths.root / "seccomp" / "default.bpf"
    try:
        data = cached.read_bytes()
        if data.startswith(key):
            return data[len(key) :]
    except FileNotFoundError:
        pass
    program = runtime.compile_filter(to_filter(profile, caps))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
    tmp.write_bytes(key + program)
    os.replace(tmp, cached)
    return program


def program(paths: Paths, choice: str) -> bytes | None:
    """The BPF program for `--security-opt seccomp=<choice>` ("" is the default); None if unconfined."""
    if choice == UNCONFINED:
        return None
    if not choice:
        return _default_program(paths)
    try:
        return runtime.compile_filter(to_filter(read_profile(choice), container_capabilities()))
    except runtime.FilterError as exc:
        raise ProfileError(f"seccomp profile {choice}: {exc}") from None


def save(directory: Path, code: bytes | None) -> None:
    """Keep the container's program beside its state, for its start and every exec."""
    if code is not None:
        (directory / PROGRAM_FILE).write_bytes(code)


def load(directory: Path) -> bytes | None:
    try:
        return (directory / PROGRAM_FILE).read_bytes()
    except FileNotFoundError:
        return None
