"""COPY and ADD: sources from the context, heredocs, URLs (ADD), another stage or an image (--from).

The cache key is the parent's key, the instruction after substitution, and the content
digest of what is copied (context files as `Context.digest` reads them, heredoc bodies,
fetched bytes, or the source stage's own key), so editing one copied file rebuilds from here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from engine.service.build_fs import CopySpec, copy_step
from engine.service.build_state import State, chain
from engine.service.dockerfile import DockerfileError, Instruction
from engine.service.substitution import expand, expand_words

if TYPE_CHECKING:
    from engine.service.builds import Builder

MAX_DOWNLOAD = 1 << 30


def _fetch(url: str, directory: Path) -> tuple[str, str]:
    """ADD URL: the file (mode 0600, as docker's) and its sha256."""
    import requests

    name = os.path.basename(urlparse(url).path) or "download"
    target = directory / name
    h = hashlib.sha256()
    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        size = 0
        with open(target, "wb") as out:
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise ValueError(f"ADD {url}: larger than {MAX_DOWNLOAD >> 30} GiB")
                h.update(chunk)
                out.write(chunk)
    os.chmod(target, 0o600)
    return name, h.hexdigest()


def _is_url(instruction: Instruction, source: str) -> bool:
    return instruction.keyword == "ADD" and urlparse(source).scheme in ("http", "https")


def copy_instruction(builder: Builder, state: State, instruction: Instruction, prefix: str) -> None:
    env = state.substitution_env()
    escape = builder.escape
    if instruction.exec_form is not None:
        words = [expand(w, env, escape) for w in instruction.exec_form]
    else:
        words = expand_words(instruction.args, env, escape)
    if len(words) < 2:
        raise DockerfileError(instruction.line, f"{instruction.keyword} needs at least one source and a destination")
    *sources, dest = words
    if not dest.startswith("/"):
        dest = os.path.join(state.workdir, dest) + ("/" if dest.endswith("/") or dest in (".", "./") else "")
    flags = {k: expand(v, env, escape) for k, v in instruction.flags.items()}
    chmod = None
    if "chmod" in flags:
        try:
            chmod = int(flags["chmod"], 8)
        except ValueError:
            raise DockerfileError(instruction.line, f"invalid --chmod {flags['chmod']!r}: expected octal") from None
        if not 0 <= chmod <= 0o7777:
            raise DockerfileError(instruction.line, f"invalid --chmod {flags['chmod']!r}")
    if "checksum" in flags and not all(_is_url(instruction, source) for source in sources):
        raise DockerfileError(instruction.line, "ADD --checksum is only for URL sources")
    heredocs = {h.name: h for h in instruction.heredocs}
    # Heredoc bodies and downloads are written here; context files are copied from where they are.
    staged = bool(heredocs) or any(_is_url(instruction, source) for source in sources)
    staging: Path | None = None
    if staged:
        import tempfile  # only for heredocs and downloads, as shutil below

        staging = Path(tempfile.mkdtemp(prefix="sources-", dir=builder._build_dir()))
    try:
        spec = CopySpec([], dest, dest.endswith("/") or len(sources) > 1, flags.get("chown"), chmod)
        spec.extract = instruction.keyword == "ADD"
        content = hashlib.sha256()
        context_paths: list[str] = []
        if "from" in flags:
            source_key = _from_source(builder, spec, flags["from"])
            spec.sources = [("", s) for s in sources]
            content.update(source_key.encode())
        else:
            for source in sources:
                marker = source.lstrip("<-").strip("\"'")
                if staging is not None and source.startswith("<<") and marker in heredocs:
                    doc = heredocs[marker]
                    body = expand(doc.body, env, escape) if doc.expand else doc.body
                    (staging / marker).write_text(body)
                    os.chmod(staging / marker, 0o644)
                    spec.sources.append((str(staging), marker))
                    content.update(b"heredoc\0" + body.encode())
                elif staging is not None and _is_url(instruction, source):
                    try:
                        name, digest = _fetch(source, staging)
                    except OSError as exc:  # requests' errors are OSErrors too
                        raise DockerfileError(instruction.line, f"ADD {source}: {exc}") from None
                    expected = flags.get("checksum")
                    if expected is not None and expected != f"sha256:{digest}":
                        message = f"ADD {source}: checksum sha256:{digest} does not match --checksum={expected}"
                        raise DockerfileError(instruction.line, message)
                    spec.sources.append((str(staging), name))
                    spec.extract = False
                    content.update(f"url\0{digest}".encode())
                else:
                    for rel in builder.context.resolve(source):
                        context_paths.append(rel)
                        spec.sources.append((str(builder.context.root), rel))
            if context_paths:
                spec.keep = [p for rel in context_paths for p in builder.context.walk(rel)]
                content.update(builder.context.digest(context_paths).encode())
        spec.dest_is_dir = spec.dest_is_dir or len(spec.sources) > 1
        key = chain(state.key, instruction.text, sources, dest, content.hexdigest())
        created_by = f"{instruction.keyword} {' '.join(words)} # buildkit"
        label = f"{prefix} {instruction.text}"
        builder.file_step(state, key, created_by, label, lambda dirs, d: copy_step(dirs, d, spec))
    finally:
        if staging is not None:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)


def _from_source(builder: Builder, spec: CopySpec, source: str) -> str:
    """Point `spec` at a stage's or an image's layers; the key that stands for their content."""
    names = {str(index): stage for index, stage in builder.stages.items()}
    for stage_name, index in builder.stage_names.items():
        if index in builder.stages:
            names[stage_name] = builder.stages[index]
    state = names.get(source.lower()) or builder._image_state(source)
    spec.source_layers = [str(p) for p in builder._layer_dirs(state.layers)]
    return state.key
