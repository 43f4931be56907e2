"""The `berth` command: the root that gathers the server's, the client's and the engine's commands.

Each package contributes a list of click commands; heavy imports stay inside the
commands so that `berth run` starts fast.
"""

from __future__ import annotations

import click

from client.cli import COMMANDS as CLIENT_COMMANDS
from engine.commands import COMMANDS as ENGINE_COMMANDS
from registry.cli import COMMANDS as REGISTRY_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="berth")
def main() -> None:
    """Berth: a private container registry, a pull/push client and a small container engine."""


for _command in (*REGISTRY_COMMANDS, *CLIENT_COMMANDS, *ENGINE_COMMANDS):
    main.add_command(_command)
