"""The build context: .dockerignore rules, globs, and sources that try to leave the context."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.service.build_context import Context, ContextError


@pytest.fixture
def context(tmp_path: Path) -> Context:
    for name in ("a.txt", "b.log", "keep.log", "dir/c.txt", "dir/deep/d.log", "node_modules/x/y.js"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "inside").symlink_to("dir")
    (tmp_path / "outside").symlink_to("/etc")
    (tmp_path / ".dockerignore").write_text("# comment\n**/*.log\n!keep.log\nnode_modules\n/dir/../a.txt\n")
    return Context(tmp_path)


def test_ignore_rules_match_dockers(context: Context) -> None:
    assert sorted(context.walk("")) == [
        ".dockerignore",
        "dir",
        "dir/c.txt",
        "dir/deep",
        "inside",
        "keep.log",
        "outside",
    ]
    assert context.resolve("*.log") == ["keep.log"]
    with pytest.raises(ContextError, match="excluded"):
        context.resolve("a.txt")


def test_symlinks_resolve_inside_the_context(context: Context) -> None:
    assert context.resolve("inside/c.txt") == ["dir/c.txt"]
    with pytest.raises(ContextError, match="not found"):
        context.resolve("outside/passwd")  # /etc/passwd seen from the context root: absent


@pytest.mark.parametrize("source", ["../x", "dir/../../x", "a/../../../etc/passwd"])
def test_climbing_out_is_refused(context: Context, source: str) -> None:
    with pytest.raises(ContextError, match="outside the build context"):
        context.resolve(source)


def test_content_digest_follows_content_not_times(context: Context) -> None:
    before = context.digest(["dir"])
    (context.root / "dir" / "c.txt").touch()
    assert context.digest(["dir"]) == before
    (context.root / "dir" / "c.txt").write_text("changed")
    assert context.digest(["dir"]) != before


def test_unusable_dockerignore(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("[unterminated\n")
    with pytest.raises(ContextError, match="unterminated"):
        Context(tmp_path)
    (tmp_path / ".dockerignore").write_bytes(b"#" * (2 << 20))
    with pytest.raises(ContextError, match="larger than"):
        Context(tmp_path)
