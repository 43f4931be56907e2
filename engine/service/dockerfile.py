"""The Dockerfile grammar, as docker's reference documents it: our own parser, pure (no system calls).

Why not `dockerfile-parse` from PyPI: it returns instructions as strings with no heredoc
bodies, no flags and no per-instruction line span, and re-implements substitution in its own
way; the build needs all of those, with errors that name the line, so this module is the
whole grammar in one place instead of a library plus patches around it.

What it reads: parser directives at the top (`# escape=` changes the escape character,
`# syntax=` is ignored and reported, `# check=` ignored), comments, line continuations,
heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) for RUN, COPY and ADD, JSON (exec) and shell forms,
flags (`--from=`...), `ARG` before the first `FROM` and `ONBUILD` triggers. Variables are not
expanded here: that depends on the build's state and happens in `builds.py`.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from engine.service.substitution import SubstitutionError, split_words

MAX_DOCKERFILE = 4 << 20
"""A Dockerfile larger than this (docker allows about as much through its API) is refused before parsing."""
MAX_LINES = 100_000

INSTRUCTIONS = frozenset(
    {
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "WORKDIR",
        "USER",
        "CMD",
        "ENTRYPOINT",
        "EXPOSE",
        "LABEL",
        "VOLUME",
        "STOPSIGNAL",
        "SHELL",
        "HEALTHCHECK",
        "ONBUILD",
        "MAINTAINER",
    }
)
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_.-]*)\2")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


class DockerfileError(ValueError):
    """The Dockerfile breaks the grammar; the message names the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"Dockerfile:{line}: {message}" if line else f"Dockerfile: {message}")
        self.line = line


class Heredoc(NamedTuple):
    """A `<<NAME` body that follows its instruction's line."""

    name: str
    body: str
    expand: bool
    """False when the delimiter was quoted: `$VAR` in the body stays as written."""


class Instruction(NamedTuple):
    """One Dockerfile instruction as written (before substitution), with the line it starts on."""

    keyword: str
    args: str
    """The arguments after the flags, continuations joined, heredoc markers left in place."""
    line: int
    flags: dict[str, str]
    exec_form: list[str] | None = None
    """The arguments as a JSON array of strings, when they were written as one."""
    heredocs: tuple[Heredoc, ...] = ()
    trigger: Instruction | None = None
    """ONBUILD's instruction."""

    @property
    def text(self) -> str:
        """The instruction as docker prints it in progress and history (flags, then arguments)."""
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.keyword} {flags}{self.args}".rstrip()


class Stage:
    """A FROM and the instructions up to the next one.

    A plain class, not a NamedTuple: its `index` would shadow tuple.index.
    """

    def __init__(
        self, base: str, name: str | None, index: int, line: int, platform: str | None, instructions: list[Instruction]
    ) -> None:
        self.base = base
        """The FROM argument, before substitution of the global ARGs."""
        self.name = name
        self.index = index
        self.line = line
        self.platform = platform
        self.instructions = instructions


class Dockerfile(NamedTuple):
    """A parsed Dockerfile: its escape character, the ARGs before the first FROM, its stages and notices."""

    escape: str
    global_args: list[Instruction]
    stages: list[Stage]
    notices: list[str]


def parse(text: str | bytes) -> Dockerfile:
    if isinstance(text, bytes):
        if len(text) > MAX_DOCKERFILE:
            raise DockerfileError(0, f"the Dockerfile is larger than {MAX_DOCKERFILE >> 20} MiB")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DockerfileError(0, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(text) > MAX_DOCKERFILE:
        raise DockerfileError(0, f"the Dockerfile is larger than {MAX_DOCKERFILE >> 20} MiB")
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise DockerfileError(0, f"the Dockerfile has more than {MAX_LINES} lines")
    escape, notices, start = _directives(lines)
    instructions = list(_instructions(lines, start, escape))
    return _stages(instructions, escape, notices)


def _directives(lines: list[str]) -> tuple[str, list[str], int]:
    """Parser directives: only at the very top, each at most once; any other line ends them."""
    escape, seen = "\\", set()
    notices: list[str] = []
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match:
            return escape, notices, number
        key, value = match.group(1).lower(), match.group(2)
        if key in seen:
            raise DockerfileError(number + 1, f"only one {key} parser directive can be used")
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(number + 1, f"invalid escape token {value!r}: it must be ` or \\")
            escape = value
        elif key == "syntax":
            notices.append(f"# syntax={value} is ignored: berth builds with its own frontend")
    return escape, notices, len(lines)


def _ends_with_escape(line: str, escape: str) -> bool:
    """Docker's rule: the escape character, then only spaces or tabs, at the end of the line."""
    return line.rstrip(" \t").endswith(escape)


def _instructions(lines: list[str], number: int, escape: str):  # type: ignore[no-untyped-def]
    while number < len(lines):
        stripped = lines[number].strip()
        if not stripped or stripped.startswith("#"):
            number += 1
            continue
        first = number
        parts = []
        line = lines[number]
        number += 1
        while _ends_with_escape(line, escape):
            parts.append(line.rstrip(" \t")[:-1])
            while number < len(lines) and (not lines[number].strip() or lines[number].lstrip().startswith("#")):
                number += 1
            if number >= len(lines):
                line = ""
                break
            line = lines[number]
            number += 1
        parts.append(line)
        logical = "".join(parts).strip()
        instruction, number = _instruction(logical, first + 1, lines, number, escape)
        yield instruction


def _instruction(logical: str, line: int, lines: list[str], number: int, escape: str) -> tuple[Instruction, int]:
    keyword, _, rest = logical.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = more + " " + rest
    keyword = keyword.upper()
    if keyword not in INSTRUCTIONS:
        raise DockerfileError(line, f"unknown instruction: {keyword[:40]}")
    rest = rest.strip()
    if keyword == "ONBUILD":
        inner_keyword = rest.split(None, 1)[0].upper() if rest else ""
        if inner_keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(line, f"{inner_keyword} isn't allowed as an ONBUILD trigger")
        if not rest:
            raise DockerfileError(line, "ONBUILD needs an instruction")
        trigger, number = _instruction(rest, line, lines, number, escape)
        return Instruction("ONBUILD", rest, line, {}, trigger=trigger), number
    flags, rest = _flags(keyword, rest, line, escape)
    heredocs: tuple[Heredoc, ...] = ()
    exec_form = _json_array(rest)
    if keyword in HEREDOC_INSTRUCTIONS and exec_form is None:
        heredocs, number = _heredocs(rest, line, lines, number)
    if keyword == "SHELL" and exec_form is None:
        raise DockerfileError(line, "SHELL requires the arguments to be in JSON form")
    if not rest and keyword not in ("CMD", "ENTRYPOINT", "RUN"):
        raise DockerfileError(line, f"{keyword} requires at least one argument")
    if keyword == "RUN" and not rest:
        raise DockerfileError(line, "RUN requires at least one argument")
    return Instruction(keyword, rest, line, flags, exec_form, heredocs), number


def _flags(keyword: str, rest: str, line: int, escape: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    allowed = FLAGS.get(keyword, frozenset())
    while rest.startswith("--"):
        try:
            word = split_words(rest, escape)[0]
        except (IndexError, SubstitutionError) as exc:
            raise DockerfileError(line, f"malformed flag: {exc}") from None
        name, eq, value = word[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(line, f"unknown flag: --{name[:40]} (not valid for {keyword})")
        if name in flags:
            raise DockerfileError(line, f"duplicate flag: --{name}")
        flags[name] = value if eq else "true"
        rest = rest[len(word) :].lstrip()
    return flags, rest


def _json_array(rest: str) -> list[str] | None:
    """Docker's rule: a valid JSON array of strings is the exec form; anything else is shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _heredocs(rest: str, line: int, lines: list[str], number: int) -> tuple[tuple[Heredoc, ...], int]:
    found = []
    for word in rest.split():
        match = _HEREDOC.match(word)
        if not match:
            continue
        chomp, quote, name = match.groups()
        body = []
        while True:
            if number >= len(lines):
                raise DockerfileError(line, f"unterminated heredoc: no line {name!r} closes <<{quote}{name}{quote}")
            text = lines[number]
            number += 1
            if chomp:
                text = text.lstrip("\t")
            if text == name:
                break
            body.append(text + "\n")
        found.append(Heredoc(name, "".join(body), expand=not quote))
    return tuple(found), number


def _stages(instructions: list[Instruction], escape: str, notices: list[str]) -> Dockerfile:
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    for instruction in instructions:
        if instruction.keyword == "FROM":
            base, name = _from_args(instruction)
            if name and any(s.name == name for s in stages):
                raise DockerfileError(instruction.line, f"duplicate stage name {name!r}")
            current = []
            stages.append(Stage(base, name, len(stages), instruction.line, instruction.flags.get("platform"), current))
        elif current is None:
            if instruction.keyword != "ARG":
                raise DockerfileError(
                    instruction.line, f"{instruction.keyword} before the first FROM (only ARG may be)"
                )
            global_args.append(instruction)
        else:
            current.append(instruction)
    if not stages:
        raise DockerfileError(0, "no FROM instruction: a Dockerfile needs at least one stage")
    return Dockerfile(escape, global_args, stages, notices)


def _from_args(instruction: Instruction) -> tuple[str, str | None]:
    words = instruction.args.split()
    if len(words) == 1:
        return words[0], None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
            raise DockerfileError(instruction.line, f"invalid stage name {words[2]!r}")
        return words[0], name
    raise DockerfileError(instruction.line, "FROM takes an image and optionally AS NAME")
