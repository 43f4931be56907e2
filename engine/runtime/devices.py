"""The devices a container may use, and that allow-list as cgroup v1 rules or a cgroup v2 BPF program.

docker's default: any device node may be created (`m`), but only the harmless ones
(null, zero, full, random, urandom, tty, console, ptmx, the pts, tun) may be opened. v1
expresses this in `devices.allow`; v2 has no devices files, so, as runc does, the rules
are compiled into a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup. The
kernel calls it with `struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor}`
where access_type is (access << 16) | type; it returns 1 to allow and 0 to deny.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

WILDCARD = -1
_TYPES = {"c": 2, "b": 1}  # BPF_DEVCG_DEV_CHAR, BPF_DEVCG_DEV_BLOCK
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE


@dataclass(frozen=True)
class Rule:
    """One allowed device: `c`/`b`, major and minor (WILDCARD: any), and access letters `rwm`."""

    kind: str
    major: int
    minor: int
    access: str

    def v1(self) -> str:
        def number(n: int) -> str:
            return "*" if n == WILDCARD else str(n)

        return f"{self.kind} {number(self.major)}:{number(self.minor)} {self.access}"


ALLOWED = (
    Rule("c", WILDCARD, WILDCARD, "m"),
    Rule("b", WILDCARD, WILDCARD, "m"),
    Rule("c", 1, 3, "rwm"),
    Rule("c", 1, 5, "rwm"),
    Rule("c", 1, 7, "rwm"),
    Rule("c", 1, 8, "rwm"),
    Rule("c", 1, 9, "rwm"),
    Rule("c", 5, 0, "rwm"),
    Rule("c", 5, 1, "rwm"),
    Rule("c", 5, 2, "rwm"),
    Rule("c", 136, WILDCARD, "rwm"),
    Rule("c", 10, 200, "rwm"),
)

# eBPF opcodes (linux/bpf.h): class | size/op | source.
_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_AND32_K = 0x54  # dst &= imm
_RSH32_K = 0x74  # dst >>= imm
_MOV64_X = 0xBF  # dst = src
_MOV64_K = 0xB7  # dst = imm
_JNE_K = 0x55  # if dst != imm: pc += off
_JNE_X = 0x5D  # if dst != src: pc += off
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def _rule_block(rule: Rule) -> bytes:
    """Allow (r0 = 1; exit) when r2 type, r3 access, r4 major and r5 minor match the rule."""
    access = sum(_ACCESS[a] for a in rule.access)
    checks: list[tuple[int, int, int, int]] = [(_JNE_K, 2, 0, _TYPES[rule.kind])]
    checks += [(_MOV64_X, 1, 3, 0), (_AND32_K, 1, 0, access), (_JNE_X, 1, 3, 0)]  # requested ⊆ allowed
    if rule.major != WILDCARD:
        checks.append((_JNE_K, 4, 0, rule.major))
    if rule.minor != WILDCARD:
        checks.append((_JNE_K, 5, 0, rule.minor))
    length = len(checks) + 2
    out = b""
    for index, (code, dst, src, imm) in enumerate(checks):
        jumps = code in (_JNE_K, _JNE_X)
        out += _insn(code, dst, src, off=length - index - 1 if jumps else 0, imm=imm)
    return out + _insn(_MOV64_K, 0, imm=1) + _insn(_EXIT)


def bpf_program(rules: tuple[Rule, ...] = ALLOWED) -> bytes:
    """The allow-list as eBPF instructions: load the context, try each rule, deny by default."""
    prologue = (
        _insn(_LDX_W, 2, 1, 0)
        + _insn(_AND32_K, 2, imm=0xFFFF)  # r2 = type
        + _insn(_LDX_W, 3, 1, 0)
        + _insn(_RSH32_K, 3, imm=16)  # r3 = access
        + _insn(_LDX_W, 4, 1, 4)
        + _insn(_LDX_W, 5, 1, 8)  # r4 = major, r5 = minor
    )
    return prologue + b"".join(_rule_block(r) for r in rules) + _insn(_MOV64_K, 0, imm=0) + _insn(_EXIT)
