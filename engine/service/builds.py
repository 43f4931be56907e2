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

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from engine.service import image_config as ic
from engine.service.build_cache import BuildCache
from engine.service.build_context import Context
from engine.service.build_state import BuildError, State, apply_metadata, arg_pairs, chain, now
from engine.service.dockerfile import Dockerfile, DockerfileError, Instruction, Stage, parse
from engine.service.layer_diff import LayerBlob, has_changes, write_layer
from engine.service.substitution import SubstitutionError, expand


class Step(Protocol):
    def cached(self) -> None: ...
    def output(self, data: bytes) -> None: ...
    def done(self) -> None: ...


class Reporter(Protocol):
    def step(self, label: str) -> Step: ...
    def note(self, text: str) -> None: ...


class BuildOptions:
    """`berth build`'s flags, as the front doors (CLI and API) pass them to the Builder.

    A plain class: one is made per build and nothing compares two (a dataclass costs ~0.5 ms
    to define at every start, see docs/architecture.md "Start-up").
    """

    def __init__(
        self,
        context: Path,
        *,
        dockerfile: Path | None = None,
        build_args: dict[str, str] | None = None,
        target: str | None = None,
        no_cache: bool = False,
        network: str = "bridge",
        labels: dict[str, str] | None = None,
        compression: str = "gzip",
        epoch: int | None = None,
    ) -> None:
        self.context = context
        self.dockerfile = dockerfile
        self.build_args = build_args if build_args is not None else {}
        self.target = target
        self.no_cache = no_cache
        self.network = network
        self.labels = labels if labels is not None else {}
        self.compression = compression
        self.epoch = epoch


class BuildResult(NamedTuple):
    """The built image: its manifest and config bytes, and the manifest's digest."""

    manifest: bytes
    config: bytes
    digest: str


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
        self.created = now(options.epoch)
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
            for name, default in arg_pairs(instruction, values, self.escape):
                values[name] = self.options.build_args.get(name, default or "")
        return values

    def _target(self, dockerfile: Dockerfile) -> int:
        if self.options.target is None:
            return len(dockerfile.stages) - 1
        for stage in dockerfile.stages:
            if stage.name == self.options.target.lower():
                return stage.index
        raise BuildError(f"target stage {self.options.target!r} could not be found")

    def _base_name(self, stage: Stage) -> str:
        instruction = Instruction("FROM", stage.base, stage.line, {})
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
            self._expand(stage.platform, self.global_args, Instruction("FROM", base, stage.line, {}))
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
                from engine.service.build_run import run_instruction

                run_instruction(self, state, instruction, prefix)
            elif keyword in ("COPY", "ADD"):
                from engine.service.build_copy import copy_instruction

                copy_instruction(self, state, instruction, prefix)
            elif keyword == "WORKDIR":
                self._workdir(state, instruction, prefix)
            else:
                apply_metadata(state, instruction, self.options.build_args, self.global_args, self.escape)
        except (SubstitutionError, ic.ConfigError, ValueError) as exc:
            if isinstance(exc, DockerfileError):
                raise
            raise DockerfileError(instruction.line, str(exc)) from None

    def _cached(self, key: str) -> tuple[LayerBlob | None, str] | None:
        return None if self.options.no_cache else self.cache.get(f"{key}+{self.options.compression}")

    def _store_layer(self, key: str, changes: Path) -> tuple[LayerBlob | None, str]:
        layer = None
        if has_changes(changes):
            layer = write_layer(changes, self.layout, self.options.compression, self.options.epoch)
        created = self.created if self.options.epoch is not None else now()
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
            import shutil  # with tempfile: only a step that runs needs them (they pull in bz2, lzma, random)
            import tempfile

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
