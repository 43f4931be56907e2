"""Compiling rules with libseccomp and installing the program: a real filter in a forked child."""

from __future__ import annotations

import errno
import os

import pytest

from engine.runtime import syscalls
from engine.runtime.seccomp import Filter, FilterError, Rule, compile_filter, install


def in_child(program: bytes, probe: str) -> int:
    """Install `program` in a child (after no_new_privs, as PID 1 does) and return the errno `probe` meets."""
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.set_no_new_privs()
            install(program)
            try:
                os.mkdir(probe)
            except OSError as exc:
                os._exit(exc.errno or 0)
            os._exit(0)
        except BaseException:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_compiled_filter_answers_as_its_rules_say(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = (Rule("mkdir", "errno", errno.EACCES), Rule("mkdirat", "errno", errno.EACCES), Rule("no_such_call", "trap"))
    program = compile_filter(Filter("allow", 0, ("X86_64", "X86", "X32"), rules))
    assert len(program) % 8 == 0 and 0 < len(program) // 8 <= 4096
    assert in_child(program, str(tmp_path / "denied")) == errno.EACCES
    assert not (tmp_path / "denied").exists()
    allowed = compile_filter(Filter("allow", 0, ("X86_64",), (Rule("rmdir", "errno", errno.EPERM),)))
    assert in_child(allowed, str(tmp_path / "made")) == 0 and (tmp_path / "made").is_dir()


def test_what_libseccomp_or_the_kernel_would_refuse_is_a_clear_error() -> None:
    with pytest.raises(FilterError, match="architecture"):
        compile_filter(Filter("allow", 0, ("Z80",), ()))
    for garbage in (b"", b"1234567", b"\0" * 8 * 4097):
        with pytest.raises(FilterError):
            install(garbage)
