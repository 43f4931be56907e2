"""The `berth` command: the root that gathers the engine's, the client's and the server's commands.

Each package contributes a list of click commands (`COMMANDS`). The root imports a
package's list only when it needs a command from it, so `berth run` never loads the
client's or the server's modules.
"""

from __future__ import annotations

import importlib

import click

SOURCES = ("engine.commands", "client.cli", "registry.cli")


class Root(click.Group):
    """A group that loads its commands package by package, on demand."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.loaded: set[str] = set()

    def _load(self, until: str | None = None) -> None:
        for source in SOURCES:
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
@click.version_option(package_name="berth")
def main() -> None:
    """Berth: a private container registry, a pull/push client and a small container engine."""
