"""A seccomp filter: compiled to a BPF program by libseccomp, installed by PID 1 just before exec.

libseccomp (through pyseccomp) turns rules into classic BPF for the native architecture
and any others given (x86 and x32 beside x86_64, so 32-bit programs meet the same rules
instead of being killed). Compiling costs milliseconds and importing pyseccomp runs
`ldconfig`, so the service compiles once and keeps the program; installing it
(`install`) is one prctl and needs neither. Rules are plain data here: which filter a
container gets is the service's decision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from engine.runtime import syscalls

ACTIONS = ("allow", "errno", "kill_thread", "kill_process", "trap", "trace", "log")
OPERATORS = ("NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ")
BPF_MAXINSNS = 4096
_INSTRUCTION = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class FilterError(ValueError):
    """libseccomp refused the rules (an unknown architecture, a rule it cannot express)."""


@dataclass(frozen=True)
class Condition:
    """Argument `index` compared with `op`; for MASKED_EQ, (arg & value) == value_two."""

    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    """What one system call gets (`action`, with `data`) when all `conditions` on its arguments hold."""

    syscall: str
    action: str
    data: int = 0  # the errno for "errno", the message for "trace"
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Filter:
    """A whole seccomp profile: the default action, the architectures it covers, and the rules."""

    default_action: str
    default_data: int
    architectures: tuple[str, ...]  # libseccomp's names without SCMP_ARCH_ ("X86_64", "X86", "X32", ...)
    rules: tuple[Rule, ...]


def _action(seccomp: Any, name: str, data: int) -> int:
    values = {
        "allow": seccomp.ALLOW,
        "kill_thread": seccomp.KILL_THREAD,
        "kill_process": seccomp.KILL_PROCESS,
        "trap": seccomp.TRAP,
        "log": seccomp.LOG,
    }
    if name == "errno":
        return seccomp.ERRNO(data)
    if name == "trace":
        return seccomp.TRACE(data)
    return values[name]


def _arch_token(seccomp: Any, name: str) -> int:
    token = getattr(seccomp.Arch, name, None)
    if not isinstance(token, int) or name == "NATIVE":
        raise FilterError(f"libseccomp does not know the architecture {name!r}")
    return token


def compile_filter(spec: Filter) -> bytes:
    """The BPF program for `spec`. Syscalls this libseccomp does not know are skipped, as runc does."""
    import tempfile

    import pyseccomp as seccomp

    native = seccomp.system_arch()
    program = seccomp.SyscallFilter(_action(seccomp, spec.default_action, spec.default_data))
    try:
        for arch in spec.architectures:
            token = _arch_token(seccomp, arch)
            if token != native:
                program.add_arch(token)
        for rule in spec.rules:
            number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, rule.syscall)
            if number == -1:  # __NR_SCMP_ERROR: unknown on every architecture libseccomp knows
                continue
            action = _action(seccomp, rule.action, rule.data)
            args = [seccomp.Arg(c.index, OPERATORS.index(c.op) + 1, c.value, c.value_two) for c in rule.conditions]
            indexes = [c.index for c in rule.conditions]
            if len(set(indexes)) == len(indexes):
                program.add_rule(action, number, *args)
            else:  # several comparisons of one argument: each is its own rule (OR), as runc does
                for arg in args:
                    program.add_rule(action, number, arg)
        with tempfile.TemporaryFile() as out:
            program.export_bpf(out)
            out.seek(0)
            code = out.read()
    except OSError as exc:
        raise FilterError(f"libseccomp refused the profile: {os.strerror(exc.errno or 0)}") from None
    if len(code) > BPF_MAXINSNS * _INSTRUCTION:
        raise FilterError(f"the profile compiles to {len(code) // _INSTRUCTION} instructions (the kernel takes 4096)")
    return code


def install(program: bytes) -> None:
    """Filter every later system call of this thread and its children (needs no_new_privs first)."""
    if not program or len(program) % _INSTRUCTION or len(program) > BPF_MAXINSNS * _INSTRUCTION:
        raise FilterError("not a seccomp BPF program")
    syscalls.set_seccomp_filter(program)
