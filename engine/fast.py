"""`berth run`, `build`, `pull` and `push` without click: a hand parser for the common command lines.

Importing click and building a command's options costs about 18 ms of a start (click's
parser also imports difflib for every short option it tries as a long one first), more
than a third of what issue 12 allows `run` over the bare interpreter, and a cached
`build` must finish before `docker build` does. This parser accepts only command lines
that click would parse without a message, in click's syntax (`--opt VALUE`,
`--opt=VALUE`, `-xVALUE`, clustered short flags), and then produces exactly the
parameters click would (tests/engine/test_cli.py compares the two). Anything else (help,
an unknown option or one whose value click converts, a choice not offered, `--`, a
missing value or argument, shell completion) returns None and click parses it, so usage
errors and help keep click's wording.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any


class Grammar:
    """One command's options as click declares them: which are flags, take one value, or repeat."""

    def __init__(
        self,
        flags: dict[str, str],
        values: dict[str, str],
        multiple: dict[str, str],
        defaults: dict[str, Any],
        choices: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.flags, self.values, self.multiple = flags, values, multiple
        self.choices = choices or {}
        self.defaults: dict[str, Any] = {
            **{name: False for name in flags.values()},
            **{name: None for name in values.values()},
            **{name: () for name in multiple.values()},
            **defaults,
        }

    def options(self, args: list[str], interspersed: bool) -> tuple[dict[str, Any], list[str]] | None:
        """The options' parameters and the positional arguments, or None to let click parse.

        Without `interspersed`, the first positional ends the options (the rest are arguments).
        """
        params = dict(self.defaults)
        multiple: dict[str, list[str]] = {}
        positional: list[str] = []
        rest = list(args)
        while rest:
            arg = rest.pop(0)
            if arg[:1] != "-" or len(arg) == 1:
                positional.append(arg)
                if not interspersed:
                    positional += rest
                    break
                continue
            if arg.startswith("--"):
                option, eq, value = arg.partition("=")
                if option in self.flags and not eq:
                    params[self.flags[option]] = True
                    continue
                if option not in self.values and option not in self.multiple:
                    return None  # unknown, --help, converted by click, `--`, or a flag given a value
                if not eq:
                    if not rest:
                        return None
                    value = rest.pop(0)
                if not self._store(params, multiple, option, value):
                    return None
                continue
            for i in range(1, len(arg)):
                option = "-" + arg[i]
                if option in self.flags:
                    params[self.flags[option]] = True
                    continue
                if option not in self.values and option not in self.multiple:
                    return None
                if i + 1 < len(arg):
                    value = arg[i + 1 :]
                elif rest:
                    value = rest.pop(0)
                else:
                    return None
                if not self._store(params, multiple, option, value):
                    return None
                break
        params.update({name: tuple(values) for name, values in multiple.items()})
        return params, positional

    def _store(self, params: dict[str, Any], multiple: dict[str, list[str]], option: str, value: str) -> bool:
        if option in self.values:
            name = self.values[option]
            if name in self.choices and value not in self.choices[name]:
                return False  # click names the choices
            params[name] = value
        else:
            multiple.setdefault(self.multiple[option], []).append(value)
        return True


RUN = Grammar(
    flags={
        "--rm": "auto_remove",
        "-d": "detach",
        "--detach": "detach",
        "-P": "publish_all",
        "--publish-all": "publish_all",
        "--read-only": "read_only",
        "--init": "init",
        "-i": "interactive",
        "--interactive": "interactive",
        "-t": "tty",
        "--tty": "tty",
        "-q": "quiet",
        "--quiet": "quiet",
    },
    values={
        "--name": "name",
        "-w": "workdir",
        "--workdir": "workdir",
        "-u": "user",
        "--user": "user",
        "--hostname": "hostname",
        "--entrypoint": "entrypoint",
        "--network": "network",
        "--net": "network",
        "--ip": "ip",
        "-m": "memory",
        "--memory": "memory",
    },
    multiple={
        "-e": "env",
        "--env": "env",
        "-v": "volume",
        "--volume": "volume",
        "--network-alias": "aliases",
        "--dns": "dns",
        "--add-host": "add_host",
        "-p": "publish",
        "--publish": "publish",
        "--security-opt": "security_opt",
    },
    # click converts these (a file that must exist, numbers): seen, they send the line to click
    defaults={"network": "bridge", "env_file": (), "pids_limit": None, "cpus": None},
)
BUILD = Grammar(
    flags={"--no-cache": "no_cache", "--push": "push", "-q": "quiet", "--quiet": "quiet"},
    values={
        "--target": "target",
        "--platform": "platform",
        "--output": "output",
        "-o": "output",
        "--network": "network",
        "--progress": "progress",
        "--compression": "compression",
    },
    multiple={"-t": "tags", "--tag": "tags", "--build-arg": "build_arg", "--label": "label"},
    # -f is a path click checks (not a directory): seen, it sends the line to click
    defaults={"dockerfile": None, "network": "default", "progress": "auto", "compression": "gzip"},
    choices={
        "network": ("host", "none", "bridge", "default"),
        "progress": ("auto", "plain", "rich", "tty"),
        "compression": ("gzip", "zstd"),
    },
)


_TRANSFER_FLAGS = {"--insecure": "insecure", "-q": "quiet", "--quiet": "quiet", "--all-platforms": "all_platforms"}
_TRANSFER_DEFAULTS = {"fmt": "text", "ca_cert": None, "jobs": 4}  # --ca-cert and -j click checks: left to it
PULL = Grammar(
    flags=_TRANSFER_FLAGS,
    values={"--format": "fmt", "--platform": "platform"},
    multiple={},
    defaults=_TRANSFER_DEFAULTS,
    choices={"fmt": ("text", "json")},
)
PUSH = Grammar(
    flags={**_TRANSFER_FLAGS, "--preserve-digests": "preserve_digests"},
    values={"--format": "fmt", "--platform": "platform", "--compression": "compression"},
    multiple={},
    defaults=_TRANSFER_DEFAULTS,
    choices={"fmt": ("text", "json"), "compression": ("gzip", "zstd", "none")},
)


def parse_run(args: list[str]) -> dict[str, Any] | None:
    """The parameters click would give `run` for `args` (what follows `run`), or None to let click parse."""
    parsed = RUN.options(args, interspersed=False)
    if parsed is None or not parsed[1]:
        return None  # IMAGE is missing: click says so
    params, (image, *command) = parsed
    return {**params, "image": image, "command": tuple(command)}


def parse_build(args: list[str]) -> dict[str, Any] | None:
    """The parameters click would give `build` for `args`, or None to let click parse."""
    parsed = BUILD.options(args, interspersed=True)
    if parsed is None or len(parsed[1]) != 1:
        return None
    params, (context,) = parsed
    if not os.path.isdir(context) or not os.access(context, os.R_OK):
        return None  # click's Path(exists=True, file_okay=False) words the refusal
    return {**params, "context": context}


def parse_pull(args: list[str]) -> dict[str, Any] | None:
    """The parameters click would give `pull` for `args`, or None to let click parse."""
    parsed = PULL.options(args, interspersed=True)
    if parsed is None or len(parsed[1]) != 1:
        return None
    return {**parsed[0], "reference": parsed[1][0]}


def parse_push(args: list[str]) -> dict[str, Any] | None:
    """The parameters click would give `push` for `args`, or None to let click parse."""
    parsed = PUSH.options(args, interspersed=True)
    if parsed is None or len(parsed[1]) not in (1, 2):
        return None
    params, (source, *destination) = parsed
    return {**params, "source": source, "destination": destination[0] if destination else None}


PARSERS: dict[str, Callable[[list[str]], dict[str, Any] | None]] = {
    "run": parse_run,
    "build": parse_build,
    "pull": parse_pull,
    "push": parse_push,
}
"""The commands with a fast path; engine/cli.py hands these to `dispatch`."""


def dispatch(argv: list[str]) -> None:
    """Run one of PARSERS' commands here when its line parses without click; return to let click take it."""
    if len(argv) < 2 or argv[0] not in PARSERS or "_BERTH_COMPLETE" in os.environ:
        return
    params = PARSERS[argv[0]](argv[1:])
    if params is None:
        return
    body: Callable[..., None]
    if argv[0] == "run":
        from engine.front import run as body
    elif argv[0] == "build":
        from engine.build_front import build as body
    elif argv[0] == "pull":
        from client.front import pull as body
    else:
        from client.front import push as body
    try:
        body(**params)
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\nAborted!\n")  # what click's main prints for these
        sys.exit(1)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        os._exit(1)  # click's main: a closed pipe ends the command quietly, with 1
    sys.exit(0)
