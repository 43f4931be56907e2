"""The Dockerfile grammar: directives, continuations, heredocs, forms, flags, and hostile input."""

from __future__ import annotations

import pytest

from engine.service.dockerfile import MAX_DOCKERFILE, DockerfileError, parse
from engine.service.substitution import SubstitutionError, expand, expand_words, key_values


def test_stages_continuations_comments_and_forms() -> None:
    text = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM $BASE AS build
RUN echo one \\
# a comment inside the continuation is dropped
    two
CMD ["/bin/sh", "-c", "echo hi"]
ENTRYPOINT echo [not json
COPY --from=build --chown=1:2 a b /dest/
from build
"""
    dockerfile = parse(text)
    assert dockerfile.notices and "syntax" in dockerfile.notices[0]
    assert [a.args for a in dockerfile.global_args] == ["BASE=busybox"]
    first, second = dockerfile.stages
    assert (first.base, first.name, first.line) == ("$BASE", "build", 3)
    run, cmd, entrypoint, copy = first.instructions
    assert run.args == "echo one     two" and run.line == 4
    assert cmd.exec_form == ["/bin/sh", "-c", "echo hi"]
    assert entrypoint.exec_form is None and entrypoint.args == "echo [not json"
    assert copy.flags == {"from": "build", "chown": "1:2"} and copy.args == "a b /dest/"
    assert second.base == "build" and second.name is None


def test_escape_directive_and_heredocs() -> None:
    text = (
        "# escape=`\nFROM scratch\nRUN echo a `\n  b\nRUN <<EOF cat >/x\nline $HOME\nEOF\n"
        "COPY <<-'one' /one\n\tkept $X\n\tone\n"
    )
    dockerfile = parse(text)
    assert dockerfile.escape == "`"
    run, heredoc_run, copy = dockerfile.stages[0].instructions
    assert run.args == "echo a   b"
    assert heredoc_run.heredocs[0].body == "line $HOME\n" and heredoc_run.heredocs[0].expand
    assert copy.heredocs[0].name == "one" and copy.heredocs[0].body == "kept $X\n"
    assert not copy.heredocs[0].expand


def test_onbuild_is_parsed_and_restricted() -> None:
    instruction = parse("FROM scratch\nONBUILD RUN echo hi\n").stages[0].instructions[0]
    assert instruction.trigger is not None and instruction.trigger.keyword == "RUN"
    with pytest.raises(DockerfileError, match="ONBUILD ONBUILD|isn't allowed"):
        parse("FROM scratch\nONBUILD ONBUILD RUN x\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM scratch\nFROB x\n", "Dockerfile:2: unknown instruction: FROB"),
        ("FROM scratch\nRUN <<EOF\nno end\n", "Dockerfile:2: unterminated heredoc"),
        ("# escape=x\nFROM scratch\n", "Dockerfile:1: invalid escape token"),
        ("RUN echo\nFROM scratch\n", "Dockerfile:1: RUN before the first FROM"),
        ("FROM scratch\nCOPY --frm=a b c\n", "Dockerfile:2: unknown flag: --frm"),
        ("FROM scratch\nSHELL /bin/sh\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
        ("FROM a AS x\nFROM b AS x\n", "Dockerfile:2: duplicate stage name"),
        ("FROM a AS ../x\n", "Dockerfile:1: invalid stage name"),
        ("# just a comment\n", "no FROM instruction"),
        ("FROM scratch\nWORKDIR\n", "Dockerfile:2: WORKDIR requires at least one argument"),
    ],
)
def test_bad_dockerfiles_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text)
    assert message in str(info.value)


def test_huge_and_binary_dockerfiles_are_refused_before_parsing() -> None:
    with pytest.raises(DockerfileError, match="larger than"):
        parse(b"FROM scratch\n" + b"#" * MAX_DOCKERFILE)
    with pytest.raises(DockerfileError, match="not UTF-8"):
        parse(b"FROM scratch\nRUN \xff\xfe\n")
    with pytest.raises(DockerfileError, match="more than"):
        parse("FROM scratch\n" + "\n" * 200_000)


def test_substitution_forms() -> None:
    env = {"SET": "value", "EMPTY": "", "SPACED": "a b"}
    assert expand("${SET:-x}/${UNSET:-def}/${EMPTY:-e}/${EMPTY-e}", env) == "value/def/e/"
    assert expand("${SET:+alt}${UNSET:+alt}${EMPTY+alt}${EMPTY:+no}", env) == "altalt"
    assert expand("'$SET' \"$SET\" \\$SET $SET", env) == "$SET value $SET value"
    assert expand_words("one $SPACED 'c d'", env) == ["one", "a", "b", "c d"]
    assert key_values('A=1 B="two words" C=${SET}', env) == [("A", "1"), ("B", "two words"), ("C", "value")]
    assert key_values("KEY value with  spaces", env) == [("KEY", "value with  spaces")]


@pytest.mark.parametrize("word", ["${", "${UNSET?must be set}", "${X/a/b}", "'open", '"open', "${}"])
def test_bad_substitutions_raise(word: str) -> None:
    with pytest.raises(SubstitutionError):
        expand(word, {})


def test_expansion_cannot_explode() -> None:
    env = {"BIG": "x" * (1 << 19)}
    with pytest.raises(SubstitutionError, match="1 MiB"):
        expand("$BIG$BIG$BIG", env)


def test_continuation_at_end_of_file_and_crlf() -> None:
    run = parse("FROM scratch\r\nRUN echo a \\\r\n").stages[0].instructions[0]
    assert run.args == "echo a"
