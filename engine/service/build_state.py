"""A stage being built: its layers, config, history, ARGs and cache key, and the metadata instructions.

Metadata instructions (ENV, LABEL, USER, CMD, ...) only change the config: each extends the cache
key and adds an `empty_layer` history entry, as docker's builders do. ARG values come from
--build-arg, else the ARG's own default, else the global ARG of the same name.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from engine.service import image_config as ic
from engine.service.dockerfile import DockerfileError, Instruction
from engine.service.layer_diff import LayerBlob
from engine.service.substitution import SubstitutionError, expand, expand_words, key_values


class BuildError(RuntimeError):
    """The build cannot go on; `code` is the exit status `berth build` ends with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class State:
    """Where a stage is: its layers, config, history, declared ARGs and cache key so far.

    A plain class: the steps change it in place, and nothing compares two.
    """

    def __init__(
        self,
        layers: list[LayerBlob],
        config: dict[str, Any],
        history: list[dict[str, Any]],
        key: str,
        architecture: str,
        *,
        created: str = "",
    ) -> None:
        self.layers = layers
        self.config = config
        self.history = history
        self.key = key
        self.architecture = architecture
        self.args: dict[str, str] = {}
        self.author: str | None = None
        self.cmd_set = False
        self.created = created
        """When the stage's newest layer step was made (a cached step keeps its time, so a rebuild is identical)."""

    def copy(self) -> State:
        state = State(
            list(self.layers),
            json.loads(json.dumps(self.config)),
            list(self.history),
            self.key,
            self.architecture,
            created=self.created,
        )
        state.args, state.author, state.cmd_set = dict(self.args), self.author, self.cmd_set
        return state

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or ic.DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    def substitution_env(self) -> dict[str, str]:
        """ENV wins over ARG of the same name, as docker's."""
        return {**self.args, **ic.env_dict(self.config.get("Env") or [])}


def now(epoch: int | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch if epoch is not None else time.time()))


def chain(parent: str, *parts: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps([parent, *parts], sort_keys=True).encode()).hexdigest()


def _expand(text: str, env: dict[str, str], escape: str, instruction: Instruction) -> str:
    try:
        return expand(text, env, escape)
    except SubstitutionError as exc:
        raise DockerfileError(instruction.line, str(exc)) from None


def arg_pairs(instruction: Instruction, env: dict[str, str], escape: str) -> list[tuple[str, str | None]]:
    """ARG NAME[=default]...: each name with its default expanded (None when it has none)."""
    out: list[tuple[str, str | None]] = []
    for word in instruction.args.split():
        name, eq, default = word.partition("=")
        out.append((name, _expand(default, env, escape, instruction) if eq else None))
    return out


def apply_metadata(
    state: State, instruction: Instruction, build_args: dict[str, str], global_args: dict[str, str], escape: str
) -> None:
    """A metadata instruction (anything but RUN, COPY, ADD, WORKDIR): config, key and an empty-layer history entry."""
    keyword, config = instruction.keyword, state.config
    env = state.substitution_env()
    text = instruction.args
    if keyword == "ARG":
        for name, default in arg_pairs(instruction, env, escape):
            value = build_args.get(name)
            if value is None:
                value = default if default is not None else global_args.get(name)
            state.args[name] = value or ""
        state.key = chain(state.key, "ARG", sorted(state.args.items()))
        return
    if keyword == "ENV":
        ic.set_env(config, key_values(text, env, escape))
    elif keyword == "LABEL":
        ic.set_labels(config, key_values(text, env, escape))
    elif keyword == "MAINTAINER":
        state.author = text
    elif keyword == "USER":
        config["User"] = expand(text, env, escape)
    elif keyword == "EXPOSE":
        ic.expose(config, expand_words(text, env, escape))
    elif keyword == "VOLUME":
        paths = instruction.exec_form or expand_words(text, env, escape)
        ic.add_volumes(config, [expand(p, env, escape) for p in paths])
    elif keyword == "STOPSIGNAL":
        config["StopSignal"] = expand(text, env, escape)
    elif keyword == "SHELL":
        config["Shell"] = list(instruction.exec_form or [])
    elif keyword == "CMD":
        config["Cmd"] = ic.command(text, instruction.exec_form, state.shell)
        state.cmd_set = True
    elif keyword == "ENTRYPOINT":
        config["Entrypoint"] = ic.command(text, instruction.exec_form, state.shell) if text else None
        if not state.cmd_set:
            config.pop("Cmd", None)
    elif keyword == "HEALTHCHECK":
        config["Healthcheck"] = ic.healthcheck(text, instruction.exec_form, instruction.flags, state.shell)
    elif keyword == "ONBUILD":
        config["OnBuild"] = [*(config.get("OnBuild") or []), text]
    else:
        raise DockerfileError(instruction.line, f"{keyword} is not supported")
    state.key = chain(state.key, instruction.text, config)
    state.history.append(ic.history(state.created, instruction.text, empty=True))
