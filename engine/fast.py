"""`berth run` without click: a hand parser for the common command lines of the hottest command.

Importing click and building `run`'s 25 options costs about 18 ms of a run's start, more
than a third of what issue 12 allows over the bare interpreter. This parser accepts only
command lines that click would parse without a message and that need no conversion
(flags and plain string options, in click's syntax: `--opt VALUE`, `--opt=VALUE`, `-xVALUE`,
clustered short flags), and then produces exactly the parameters click would
(tests/engine/test_cli.py compares the two). Anything else (help, an unknown or typed
option, `--`, a missing value, shell completion) returns None and click parses it, so
usage errors and help keep click's wording.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

FLAGS = {
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
}
VALUES = {
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
}
MULTIPLE = {
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
}
CLICK_ONLY = {"env_file": (), "pids_limit": None, "cpus": None}
"""The options whose values click converts (a path that must exist, numbers): seen in a
command line, they send it to click; absent, they take these defaults."""
DEFAULTS: dict[str, Any] = {
    **{name: False for name in FLAGS.values()},
    **{name: None for name in VALUES.values()},
    **{name: () for name in MULTIPLE.values()},
    **CLICK_ONLY,
    "network": "bridge",
}


def parse_run(args: list[str]) -> dict[str, Any] | None:
    """The parameters click would give `run` for `args` (what follows `run`), or None to let click parse."""
    params = dict(DEFAULTS)
    multiple: dict[str, list[str]] = {}
    rest = list(args)
    while rest and rest[0][:1] == "-" and len(rest[0]) > 1:
        arg = rest.pop(0)
        if arg.startswith("--"):
            option, eq, value = arg.partition("=")
            if option in FLAGS and not eq:
                params[FLAGS[option]] = True
                continue
            if option not in VALUES and option not in MULTIPLE:
                return None  # unknown, --help, typed, `--`, or a flag given a value
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            _store(params, multiple, option, value)
            continue
        for i in range(1, len(arg)):
            option = "-" + arg[i]
            if option in FLAGS:
                params[FLAGS[option]] = True
            elif option in VALUES or option in MULTIPLE:
                if i + 1 < len(arg):
                    value = arg[i + 1 :]
                elif rest:
                    value = rest.pop(0)
                else:
                    return None
                _store(params, multiple, option, value)
                break
            else:
                return None
    if not rest:
        return None  # IMAGE is missing: click says so
    params.update({name: tuple(values) for name, values in multiple.items()})
    params["image"], params["command"] = rest[0], tuple(rest[1:])
    return params


def _store(params: dict[str, Any], multiple: dict[str, list[str]], option: str, value: str) -> None:
    if option in VALUES:
        params[VALUES[option]] = value
    else:
        multiple.setdefault(MULTIPLE[option], []).append(value)


def dispatch(argv: list[str]) -> None:
    """Run `berth run` here when its command line parses without click; return to let click take it."""
    if len(argv) < 2 or argv[0] != "run" or "_BERTH_COMPLETE" in os.environ:
        return
    params = parse_run(argv[1:])
    if params is None:
        return
    from engine.front import run

    try:
        run(**params)
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\nAborted!\n")  # what click's main prints for these
        sys.exit(1)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        os._exit(1)  # click's main: a closed pipe ends the command quietly, with 1
    sys.exit(0)
