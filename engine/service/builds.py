"""A build: the Dockerfile's stages as a sequence of steps, each reused from the cache or run.

A stage starts from an image (pulled with the client when the store lacks it), `scratch` or an
earlier stage, runs its base's ONBUILD triggers, then its instructions. Filesystem steps (RUN,
COPY, ADD, WORKDIR creating a directory) run in the step's own overlay and become one layer
each (`layer_diff`); the others change the config and add an `empty_layer` history entry.
Only the stages the target needs are built. Every step's cache key chains the parent's key,
the instruction after substitution and, for COPY/ADD, the content digest of what it copies;
a hit reuses the layer and runs nothing. The image is written to the store only once every
step succeeded, so a failed build tags nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from engine.service import image_config as ic
from engine.service.build_cache import BuildCache
from engine.service.build_context import Context
from engine.service.dockerfile import Dockerfile, DockerfileError, Instruction, Stage, parse
from engine.service.layer_diff import LayerBlob, has_changes, write_layer
from engine.service.substitution import SubstitutionError, expand, expand_words, key_values

OUTPUT_TAIL = 20
"""Lines of a failing RUN's output repeated in the error."""


class BuildError(RuntimeError):
    """The build cannot go on; `code` is the exit status `berth build` ends with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Step(Protocol):
    def cached(self) -> None: ...
    def output(self, data: bytes) -> None: ...
    def done(self) -> None: ...


class Reporter(Protocol):
    def step(self, label: str) -> Step: ...
    def note(self, text: str) -> None: ...


@dataclass
class BuildOptions:
    context: Path
    dockerfile: Path | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    network: str = "bridge"
    labels: dict[str, str] = field(default_factory=dict)
    compression: str = "gzip"
    epoch: int | None = None


@dataclass
class State:
    """Where a stage is: its layers, config, history, declared ARGs and cache key so far."""

    layers: list[LayerBlob]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    key: str
    architecture: str
    args: dict[str, str] = field(default_factory=dict)
    author: str | None = None
    cmd_set: bool = False
    created: str = ""
    """When the stage's newest layer step was made (a cached step keeps its time, so a rebuild is identical)."""

    def copy(self) -> State:
        return replace(
            self,
            layers=list(self.layers),
            config=json.loads(json.dumps(self.config)),
            history=list(self.history),
            args=dict(self.args),
        )

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or ic.DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    def substitution_env(self) -> dict[str, str]:
        """ENV wins over ARG of the same name, as docker's."""
        return {**self.args, **ic.env_dict(self.config.get("Env") or [])}


@dataclass
class BuildResult:
    manifest: bytes
    config: bytes
    digest: str


def _now(epoch: int | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch if epoch is not None else time.time()))


def chain(parent: str, *parts: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps([parent, *parts], sort_keys=True).encode()).hexdigest()


def needed_stages(dockerfile: Dockerfile, target: int, resolve_base: Callable[[Stage], str]) -> list[int]:
    """The stages `target` depends on (FROM an earlier stage, COPY --from), in build order."""
    names = {s.name: s.index for s in dockerfile.stages if s.name}
    seen: set[int] = set()

    def visit(index: int) -> None:
        if index in seen:
            return
        seen.add(index)
        stage = dockerfile.stages[index]
        deps = [resolve_base(stage)]
        deps += [i.flags["from"] for i in stage.instructions if i.keyword == "COPY" and "from" in i.flags]
        for dep in deps:
            found = names.get(dep.lower()) if dep.lower() in names else (int(dep) if dep.isdigit() else None)
            if found is not None and found < index:
                visit(found)

    visit(target)
    return sorted(seen)


class Builder:
    def __init__(self, options: BuildOptions, reporter: Reporter) -> None:
        from client.layout import open_store
        from engine.service.images import ImageStore
        from engine.service.paths import Paths

        self.options = options
        self.reporter = reporter
        self.paths = Paths.default()
        self.images = ImageStore(self.paths)
        self.layout = open_store()
        self.cache = BuildCache(self.layout)
        self.context = Context(options.context)
        self.created = _now(options.epoch)
        self.stages: dict[int, State] = {}
        self.step_number = 0

    # --- the plan ---------------------------------------------------------------------------------------------

    def build(self) -> BuildResult:
        path = self.options.dockerfile or self.options.context / "Dockerfile"
        try:
            with open(path, "rb") as f:
                data = f.read(16 << 20)
        except OSError as exc:
            raise BuildError(f"cannot read the Dockerfile {path}: {exc.strerror}") from None
        dockerfile = parse(data)
        for notice in dockerfile.notices:
            self.reporter.note(notice)
        self.escape = dockerfile.escape
        self.stage_names = {s.name: s.index for s in dockerfile.stages if s.name}
        self.global_args = self._global_args(dockerfile.global_args)
        target = self._target(dockerfile)
        for index in needed_stages(dockerfile, target, self._base_name):
            self.stages[index] = self._stage(dockerfile, dockerfile.stages[index])
        return self._write_image(self.stages[target])

    def _global_args(self, instructions: list[Instruction]) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in instructions:
            for name, default in self._arg_pairs(instruction, values):
                values[name] = self.options.build_args.get(name, default or "")
        return values

    def _arg_pairs(self, instruction: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for word in instruction.args.split():
            name, eq, default = word.partition("=")
            out.append((name, self._expand(default, env, instruction) if eq else None))
        return out

    def _target(self, dockerfile: Dockerfile) -> int:
        if self.options.target is None:
            return len(dockerfile.stages) - 1
        for stage in dockerfile.stages:
            if stage.name == self.options.target.lower():
                return stage.index
        raise BuildError(f"target stage {self.options.target!r} could not be found")

    def _base_name(self, stage: Stage) -> str:
        instruction = Instruction("FROM", stage.base, stage.line)
        return self._expand(stage.base, self.global_args, instruction)

    def _expand(self, text: str, env: dict[str, str], instruction: Instruction) -> str:
        try:
            return expand(text, env, self.escape)
        except SubstitutionError as exc:
            raise DockerfileError(instruction.line, str(exc)) from None

    # --- a stage ----------------------------------------------------------------------------------------------

    def _stage(self, dockerfile: Dockerfile, stage: Stage) -> State:
        base = self._base_name(stage)
        total = len(stage.instructions) + 1
        label = f"[{stage.name or 'stage-' + str(stage.index)} 1/{total}] FROM {base}"
        step = self.reporter.step(label)
        platform = (
            self._expand(stage.platform, self.global_args, Instruction("FROM", base, stage.line))
            if stage.platform
            else None
        )
        state = self._from(dockerfile, base, platform)
        step.done()
        env = state.config.get("Env") or []
        if not any(item.startswith("PATH=") for item in env):  # docker's builders add the default PATH
            state.config["Env"] = [ic.DEFAULT_PATH, *env]
        triggers = state.config.pop("OnBuild", None) or []
        for text in triggers:
            trigger = parse(f"FROM scratch\n{text}\n").stages[0].instructions[0]
            self._instruction(state, trigger, f"[{stage.name or 'stage-' + str(stage.index)} ONBUILD]")
        for number, instruction in enumerate(stage.instructions, start=2):
            prefix = f"[{stage.name or 'stage-' + str(stage.index)} {number}/{total}]"
            self._instruction(state, instruction, prefix)
        return state

    def _from(self, dockerfile: Dockerfile, base: str, platform: str | None = None) -> State:
        from client.platform import host_platform

        host = host_platform()
        if platform and platform not in (f"{host.os}/{host.architecture}", host.architecture):
            raise BuildError(
                f"FROM --platform={platform}: berth builds only for this machine ({host.os}/{host.architecture})"
            )

        names = {s.name: s.index for s in dockerfile.stages if s.name}
        if base.lower() in names and names[base.lower()] in self.stages:
            state = self.stages[names[base.lower()]].copy()
            state.args, state.cmd_set = {}, False
            return state
        if base == "scratch":
            return State([], {}, [], chain("scratch"), host_platform().architecture, created=self.created)
        return self._image_state(base)

    def _image_state(self, reference: str) -> State:
        from engine.service import images as store

        try:
            image = self.images.resolve(reference)
        except store.ImageNotFound:
            self.reporter.note(f"pulling {reference}")
            store.pull(reference, quiet=True)
            image = self.images.resolve(reference)
        _, manifest = self.layout.image(image.name)
        diff_ids = (image.config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(manifest.layers):
            raise BuildError(
                f"image {reference}: its config names {len(diff_ids)} layers, its manifest {len(manifest.layers)}"
            )
        layers = [
            LayerBlob(d.digest, d.size, diff, d.media_type) for d, diff in zip(manifest.layers, diff_ids, strict=True)
        ]
        config = json.loads(json.dumps(image.config.get("config") or {}))
        history = list(image.config.get("history") or [])
        missing = len(layers) - sum(not h.get("empty_layer") for h in history)
        if missing > 0:  # BuildKit's rule: a base without (enough) history gets one plain entry per layer
            history = [{"created_by": ""} for _ in range(missing)] + history
        key = chain("image", image.manifest_digest)
        created = self.created if self.options.epoch is not None else image.config.get("created") or ""
        return State(layers, config, history, key, image.config["architecture"], created=created)

    def _layer_dirs(self, layers: list[LayerBlob]) -> list[Path]:
        from engine.service.images import Image, ensure_layers

        return ensure_layers(self.images, Image("", "", "", {}, [layer.digest for layer in layers]))

    # --- instructions -----------------------------------------------------------------------------------------

    def _instruction(self, state: State, instruction: Instruction, prefix: str) -> None:
        keyword = instruction.keyword
        try:
            if keyword == "RUN":
                self._run(state, instruction, prefix)
            elif keyword in ("COPY", "ADD"):
                from engine.service.build_copy import copy_instruction

                copy_instruction(self, state, instruction, prefix)
            elif keyword == "WORKDIR":
                self._workdir(state, instruction, prefix)
            else:
                self._metadata(state, instruction)
        except (SubstitutionError, ic.ConfigError, ValueError) as exc:
            if isinstance(exc, DockerfileError):
                raise
            raise DockerfileError(instruction.line, str(exc)) from None

    def _metadata(self, state: State, instruction: Instruction) -> None:
        keyword, config = instruction.keyword, state.config
        env = state.substitution_env()
        text = instruction.args
        if keyword == "ARG":
            for name, default in self._arg_pairs(instruction, env):
                value = self.options.build_args.get(name)
                if value is None:
                    value = default if default is not None else self.global_args.get(name)
                state.args[name] = value or ""
            state.key = chain(state.key, "ARG", sorted(state.args.items()))
            return
        if keyword == "ENV":
            ic.set_env(config, key_values(text, env, self.escape))
        elif keyword == "LABEL":
            ic.set_labels(config, key_values(text, env, self.escape))
        elif keyword == "MAINTAINER":
            state.author = text
        elif keyword == "USER":
            config["User"] = expand(text, env, self.escape)
        elif keyword == "EXPOSE":
            ic.expose(config, expand_words(text, env, self.escape))
        elif keyword == "VOLUME":
            paths = instruction.exec_form or expand_words(text, env, self.escape)
            ic.add_volumes(config, [expand(p, env, self.escape) for p in paths])
        elif keyword == "STOPSIGNAL":
            config["StopSignal"] = expand(text, env, self.escape)
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

    def _run_env(self, state: State) -> list[str]:
        env = ic.env_dict(state.config.get("Env") or [])
        merged = {**state.args, **env}
        for name in ic.PROXY_ARGS & self.options.build_args.keys():
            merged.setdefault(name, self.options.build_args[name])
        merged.setdefault("PATH", ic.DEFAULT_PATH.partition("=")[2])
        return [f"{k}={v}" for k, v in merged.items()]

    def _run(self, state: State, instruction: Instruction, prefix: str) -> None:
        from engine.service.build_run import run_step

        command = self._run_command(state, instruction)
        env = self._run_env(state)
        network = instruction.flags.get("network", "default")
        if network not in ("host", "none", "default"):
            raise DockerfileError(instruction.line, f"RUN --network={network}: use default, none or host")
        network = self.options.network if network == "default" else network
        keyed_env = sorted(e for e in env if e.partition("=")[0] not in ic.PROXY_ARGS)
        key = chain(state.key, "RUN", command, keyed_env, state.config.get("User"), state.workdir)
        created_by = "RUN " + " ".join(command) + " # buildkit"
        step = self.reporter.step(f"{prefix} RUN {instruction.args}")
        hit = self._cached(key)
        if hit is None:
            tail = bytearray()

            def output(data: bytes) -> None:
                step.output(data)
                tail.extend(data)
                del tail[: max(0, len(tail) - 65536)]

            dirs = self._layer_dirs(state.layers)
            result = run_step(
                [layer.digest for layer in state.layers],
                dirs,
                command,
                env,
                cwd=state.workdir,
                user=state.config.get("User") or "",
                network=network,
                on_output=output,
            )
            try:
                if result.code != 0:
                    lines = bytes(tail).decode(errors="replace").splitlines()[-OUTPUT_TAIL:]
                    message = f"{prefix} RUN {instruction.args} failed with exit code {result.code}"
                    raise BuildError("\n".join([message, *("  " + line for line in lines)]), result.code)
                hit = self._store_layer(key, result.changes)
            finally:
                result.cleanup()
        else:
            step.cached()
        self._add_layer(state, key, hit, created_by)
        step.done()

    def _run_command(self, state: State, instruction: Instruction) -> list[str]:
        if instruction.exec_form is not None:
            return list(instruction.exec_form)
        if instruction.heredocs:
            first = instruction.heredocs[0]
            if len(instruction.heredocs) == 1 and instruction.args.strip().lstrip("<-\"'").rstrip("\"'") == first.name:
                return [*state.shell, first.body]
            script = instruction.args + "\n" + "".join(f"{h.body}{h.name}\n" for h in instruction.heredocs)
            return [*state.shell, script]
        return [*state.shell, instruction.args]

    def _cached(self, key: str) -> tuple[LayerBlob | None, str] | None:
        return None if self.options.no_cache else self.cache.get(f"{key}+{self.options.compression}")

    def _store_layer(self, key: str, changes: Path) -> tuple[LayerBlob | None, str]:
        layer = None
        if has_changes(changes):
            layer = write_layer(changes, self.layout, self.options.compression, self.options.epoch)
        created = self.created if self.options.epoch is not None else _now()
        self.cache.put(f"{key}+{self.options.compression}", layer, created)  # one blob per compression
        return layer, created

    def _add_layer(self, state: State, key: str, hit: tuple[LayerBlob | None, str], created_by: str) -> None:
        layer, created = hit
        state.key = key
        state.created = created or state.created
        if layer is not None:
            state.layers.append(layer)
        state.history.append(ic.history(state.created, created_by, empty=layer is None))

    def file_step(
        self, state: State, key: str, created_by: str, label: str, work: Callable[[list[Path], Path], None]
    ) -> None:
        """A COPY/ADD/WORKDIR step: from the cache, or `work(lower dirs, step directory)` then its diff."""
        step = self.reporter.step(label)
        hit = self._cached(key)
        if hit is None:
            directory = Path(tempfile.mkdtemp(prefix="step-", dir=self._build_dir()))
            try:
                dirs = self._layer_dirs(state.layers)
                work(dirs, directory)
                hit = self._store_layer(key, directory / ("upper" if dirs else "rootfs"))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        else:
            step.cached()
        self._add_layer(state, key, hit, created_by)
        step.done()

    def _build_dir(self) -> Path:
        path = self.paths.root / "build"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _workdir(self, state: State, instruction: Instruction, prefix: str) -> None:
        from engine.service.build_fs import mkdir_step
        from engine.service.build_run import exists_in_layers

        path = expand(instruction.args, state.substitution_env(), self.escape)
        path = os.path.normpath(os.path.join(state.workdir, path))
        state.config["WorkingDir"] = path
        if path == "/" or exists_in_layers(self._layer_dirs(state.layers), path):
            state.key = chain(state.key, "WORKDIR", path)
            state.history.append(ic.history(state.created, f"WORKDIR {path}", empty=True))
            return
        key = chain(state.key, "WORKDIR", path)
        self.file_step(
            state, key, f"WORKDIR {path}", f"{prefix} WORKDIR {path}", lambda dirs, d: mkdir_step(dirs, d, path)
        )

    # --- the image --------------------------------------------------------------------------------------------

    def _write_image(self, state: State) -> BuildResult:
        from registry.oci import mediatypes as mt

        config = dict(state.config)
        if self.options.labels:
            ic.set_labels(config, list(self.options.labels.items()))
        image: dict[str, Any] = {
            "architecture": state.architecture,
            "os": "linux",
            "created": state.created or self.created,
            "config": ic.clean(config),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in state.layers]},
            "history": state.history,
        }
        if state.author:
            image["author"] = state.author
        config_bytes = json.dumps(image, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": self.layout.write_blob(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [layer.descriptor() for layer in state.layers],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        return BuildResult(manifest_bytes, config_bytes, self.layout.write_blob(manifest_bytes))
