"""Choosing seccomp rules from a docker-format profile: includes and excludes, names, architectures, ranges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.runtime.seccomp import Condition, Rule
from engine.service.seccomp import ProfileError, read_profile, to_filter
from engine.service.seccomp_profile import ALLOWED, default_profile

CAPS = frozenset({"CAP_CHOWN", "CAP_SYS_CHROOT"})


def profile(*syscalls: dict, **top: object) -> dict:
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": list(syscalls), **top}


def names(doc: dict, caps: frozenset[str] = CAPS, machine: str = "x86_64") -> set[str]:
    return {rule.syscall for rule in to_filter(doc, caps, machine).rules}


def test_includes_need_every_condition_and_excludes_any() -> None:
    doc = profile(
        {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT", "CAP_SYS_ADMIN"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "999.0"}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]}},
    )
    assert names(doc) == {"chroot", "arch_prctl", "clone3"}
    assert names(doc, machine="aarch64") == {"chroot", "set_tls", "clone3"}


def test_rules_that_repeat_the_default_are_dropped_and_errno_defaults_to_eperm() -> None:
    doc = profile(
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
        {"name": "write", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_LT", "value": 38}]},
    )
    rules = to_filter(doc, CAPS, "x86_64").rules
    assert rules == (
        Rule("write", "errno", 13),
        Rule("socket", "allow", 0, (Condition(0, "LT", 38, 0),)),
    )
    assert to_filter(doc, CAPS, "x86_64").default_data == 1


def test_architectures_from_the_arch_map_for_this_machine_only() -> None:
    doc = profile(
        archMap=[
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ]
    )
    assert to_filter(doc, CAPS, "x86_64").architectures == ("X86_64", "X86", "X32")
    assert to_filter(doc, CAPS, "aarch64").architectures == ("AARCH64", "ARM")
    with pytest.raises(ProfileError, match="not both"):
        to_filter({**doc, "architectures": ["SCMP_ARCH_X86"]}, CAPS, "x86_64")


def test_the_default_profile_matches_dockers_rules() -> None:
    rules = to_filter(default_profile(), frozenset({"CAP_SYS_CHROOT", "CAP_CHOWN"}), "x86_64").rules
    allowed = {r.syscall for r in rules if r.action == "allow" and not r.conditions}
    assert {"unshare", "setns", "mount", "keyctl", "bpf", "reboot", "init_module", "kcmp"}.isdisjoint(allowed)
    # ptrace and process_vm_* without CAP_SYS_PTRACE from kernel 4.8 on, as docker allows them
    assert {"chroot", "arch_prctl", "modify_ldt", "ptrace", "process_vm_readv"} <= allowed
    assert set(ALLOWED) <= allowed
    assert Rule("clone3", "errno", 38) in rules
    assert Rule("clone", "allow", 0, (Condition(0, "MASKED_EQ", 0x7E020000, 0),)) in rules
    sockets = {r.conditions for r in rules if r.syscall == "socket"}
    assert sockets == {(Condition(0, "LT", 38),), (Condition(0, "EQ", 39),), (Condition(0, "GT", 40),)}


def test_a_profile_file_round_trips_and_lies_about_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(default_profile()))
    assert read_profile(str(path)) == default_profile()
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ProfileError, match="not valid JSON"):
        read_profile(str(path))
    with pytest.raises(ProfileError, match="NUL"):
        read_profile("bad\0path")
