"""The build context: which files COPY and ADD may read, `.dockerignore`, and their content digest.

Every source path is resolved inside the context directory as if it were `/` (a leading `/`
means the context root, symlinks are followed only within it), so `../`, absolute paths and
symlinks pointing out of the context can never reach a host file. A path that would climb out
is an error, as docker's "forbidden path outside the build context".

The content digest is BuildKit's rule for the cache: relative path, type, mode, link target
and bytes of every file a COPY reads (not times, not owners, which COPY resets anyway).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

from engine.runtime.securejoin import secure_join

MAX_IGNORE_FILE = 1 << 20


class ContextError(ValueError):
    """A COPY/ADD source is outside the context, missing, or excluded; or .dockerignore is unusable."""


class IgnorePattern(NamedTuple):
    """One `.dockerignore` line as a regex; `negated` (a leading `!`) brings matching paths back."""

    regex: re.Pattern[str]
    negated: bool


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax plus `**` (any number of directories), as docker's patternmatcher."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ContextError(f".dockerignore: unterminated [ in {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?$")


def read_ignore(context: Path) -> list[IgnorePattern]:
    path = context / ".dockerignore"
    try:
        if path.stat().st_size > MAX_IGNORE_FILE:
            raise ContextError(f".dockerignore is larger than {MAX_IGNORE_FILE >> 20} MiB")
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:].strip() if negated else line
        cleaned = os.path.normpath("/" + line).lstrip("/") if line not in (".", "/") else ""
        if cleaned:
            patterns.append(IgnorePattern(_pattern_regex(cleaned), negated))
    return patterns


def ignored(relative: str, patterns: list[IgnorePattern]) -> bool:
    """Docker's rule: the last pattern that matches the path (or one of its parents) decides."""
    result = False
    for pattern in patterns:
        if pattern.regex.match(relative):
            result = not pattern.negated
    return result


class Context:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise ContextError(f"the build context {root} is not a directory")
        self.patterns = read_ignore(self.root)

    def resolve(self, source: str) -> list[str]:
        """Context-relative paths the source names (globs expanded), symlinks resolved inside the context."""
        cleaned = os.path.normpath("/" + source)
        if _climbs_out(source):
            raise ContextError(f"forbidden path outside the build context: {source}")
        if any(ch in cleaned for ch in "*?["):
            matches = self._glob(cleaned.lstrip("/"))
            if not matches:
                raise ContextError(f"no source files were specified: {source} matches nothing")
            return matches
        relative = self._inside(cleaned)
        if not os.path.lexists(self.root / relative) or (relative and ignored(relative, self.patterns)):
            raise ContextError(f"{source}: not found in the build context (or excluded by .dockerignore)")
        return [relative]

    def _inside(self, path: str) -> str:
        joined = secure_join(str(self.root), path)
        return os.path.relpath(joined, self.root) if joined != str(self.root) else ""

    def _glob(self, pattern: str) -> list[str]:
        parts = pattern.split("/")
        found = [""]
        for part in parts:
            next_found = []
            for base in found:
                directory = self.root / self._inside("/" + base) if base else self.root
                if not directory.is_dir():
                    continue
                for name in sorted(os.listdir(directory)):
                    candidate = f"{base}/{name}" if base else name
                    if fnmatch.fnmatchcase(name, part) and not ignored(candidate, self.patterns):
                        next_found.append(candidate)
            found = next_found
        return [self._inside("/" + f) for f in found]

    def walk(self, relative: str) -> list[str]:
        """`relative` and everything under it that .dockerignore keeps, sorted, symlinks not followed."""
        top = self.root / relative if relative else self.root
        if not top.is_dir() or top.is_symlink():
            return [relative]
        out = [relative] if relative else []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in sorted(dirnames + filenames):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if ignored(rel, self.patterns):
                    if name in dirnames and not any(p.negated for p in self.patterns):
                        dirnames.remove(name)
                    continue
                out.append(rel)
        return out

    def digest(self, sources: list[str]) -> str:
        """The content digest of the files `sources` name (see the module doc)."""
        h = hashlib.sha256()
        for source in sources:
            for rel in self.walk(source):
                path = self.root / rel if rel else self.root
                st = os.lstat(path)
                h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
                if stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(path).encode())
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                h.update(b"\0")
        return "sha256:" + h.hexdigest()


def _climbs_out(source: str) -> bool:
    depth = 0
    for part in source.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False
