"""The `berth` command: the root that gathers the engine's, the client's and the server's commands.

Each package contributes a list of click commands (`COMMANDS`). The root imports a
package's list only when it needs a command from it, so `berth pull` never loads the
engine's command modules. `berth --version` answers before click is imported (click alone
costs about as much as the rest of that command), and so do `berth run`, `build`, `pull` and
`push` when their command line is a plain one (`fast.py`; click parses the rest, and prints
help and errors).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

VERSION = "0.1.0"
"""The project's version (pyproject.toml reads it from here)."""
SOURCES = ("engine.commands", "engine.build_command", "engine.serve_command", "client.cli", "registry.cli")
REGISTRY_ADMIN = (
    "db",
    "user",
    "grant",
    "revoke",
    "grants",
    "token",
    "gc",
    "usage",
    "quota",
    "retention",
    "immutable",
    "events",
    "upstream",
    "replicate",
)
"""The registry's admin commands (`berth serve` aside), which open its database."""
HOT = {
    "run": "engine.commands",
    "ps": "engine.commands",
    "pull": "client.cli",
    "push": "client.cli",
    "build": "engine.build_command",
    **dict.fromkeys(REGISTRY_ADMIN, "registry.cli"),
}
"""Where the hot commands live, so `berth pull` loads no engine command module first
(tests/engine/test_cli.py checks each against its package's COMMANDS); `berth build` likewise
skips the engine's container commands, and the registry's admin commands (scripted, often in
loops) skip the engine's and the client's."""


def root() -> click.Group:
    """The root group, its commands loaded package by package as they are asked for."""
    import importlib

    import click

    class Root(click.Group):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.loaded: set[str] = set()

        def _load(self, until: str | None = None) -> None:
            for source in (HOT[until], *SOURCES) if until in HOT else SOURCES:
                if until is not None and until in self.commands:
                    return
                if source not in self.loaded:
                    for command in importlib.import_module(source).COMMANDS:
                        self.add_command(command)
                    self.loaded.add(source)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            self._load(cmd_name)
            return self.commands.get(cmd_name)

        def list_commands(self, ctx: click.Context) -> list[str]:
            self._load()
            return sorted(self.commands)

    @click.group(cls=Root, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(VERSION, prog_name="berth")
    def berth() -> None:
        """Berth: a private container registry, a pull/push client and a small container engine."""

    return berth


FAST = ("run", "build", "pull", "push")
"""The commands `fast.py` parses without click (its PARSERS; tests/engine/test_cli.py checks)."""
DEFAULT_UMASK = 0o022
"""As dockerd sets at start: unpacked layers, containers' files and built layers must not
take the caller's umask (with 077 a container's non-root user could not enter /tmp or its
working directory). `berth serve` tightens it again for the registry's own files."""


def main() -> None:
    os.umask(DEFAULT_UMASK)
    if sys.argv[1:] == ["--version"]:
        print(f"berth, version {VERSION}")
        return
    if sys.argv[1:2] and sys.argv[1] in FAST:
        from engine.fast import dispatch

        dispatch(sys.argv[1:])
    root()(prog_name="berth")
