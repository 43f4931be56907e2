"""Docker's word rules for Dockerfile arguments: quotes, the escape character and `$VAR` expansion.

`expand` is docker's ProcessWord (one word out, quotes removed); `expand_words` its
ProcessWords (a line split into words where unquoted whitespace is); `split_words` the
parser's splitting of `ENV a=1 b="two words"` before any expansion. Supported forms:
`$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
`${VAR:?message}` and `${VAR?message}`; anything else in braces is an error, as in docker.
Pure functions: no system calls, so hostile text can only raise `SubstitutionError`.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_EXPANSION = 1 << 20
"""A word may not grow past 1 MiB by expansion (nested defaults could otherwise multiply it)."""


class SubstitutionError(ValueError):
    """A malformed `${...}`, an unterminated quote, or a `${VAR?message}` whose VAR is unset."""


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split at unquoted whitespace, keeping quotes and escapes in the words (expanded later)."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and quote != "'" and i + 1 < len(text):
            word.append(ch + text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if word:
                words.append("".join(word))
                word = []
            i += 1
            continue
        word.append(ch)
        i += 1
    if word:
        words.append("".join(word))
    return words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape, self.pos = text, env, escape, 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def words(self, split: bool, stop: str = "") -> list[str]:
        """Read to the end (or to `stop` outside quotes); with `split`, unquoted whitespace separates words.

        An unquoted empty expansion yields no word, a quoted one an empty word, as in a shell.
        """
        out: list[str] = []
        word: list[str] = []
        has_word = False
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                break
            if split and ch.isspace():
                self.pos += 1
                if has_word:
                    out.append("".join(word))
                    word, has_word = [], False
                continue
            if ch == "'":
                self.pos += 1
                word.append(self.single_quoted())
                has_word = True
            elif ch == '"':
                self.pos += 1
                word.append(self.double_quoted())
                has_word = True
            elif ch == self.escape:
                self.pos += 1
                if self.pos < len(self.text):
                    word.append(self.take())
                else:
                    word.append(ch)
                has_word = True
            elif ch == "$":
                self.pos += 1
                value = self.variable()
                if split:
                    pieces = value.split()
                    if pieces and value[:1].isspace() and has_word:
                        out.append("".join(word))
                        word, has_word = [], False
                    for piece in pieces[:-1]:
                        word.append(piece)
                        out.append("".join(word))
                        word = []
                    if pieces:
                        word.append(pieces[-1])
                        has_word = True
                    if pieces and value[-1:].isspace():
                        out.append("".join(word))
                        word, has_word = [], False
                else:
                    word.append(value)
                    has_word = has_word or bool(value)
            else:
                self.pos += 1
                word.append(ch)
                has_word = True
            if sum(map(len, word)) > MAX_EXPANSION:
                raise SubstitutionError("a word grew past 1 MiB by variable expansion")
        if has_word or (not split and not out):
            out.append("".join(word))
        return out

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise SubstitutionError(f"unterminated single quote in {self.text!r}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise SubstitutionError(f"unterminated double quote in {self.text!r}")
            ch = self.take()
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape):
                out.append(self.take())
            elif ch == "$":
                out.append(self.variable())
            else:
                out.append(ch)

    def name(self) -> str:
        start = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.pos += 1
        return self.text[start : self.pos]

    def variable(self) -> str:
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        name = self.name()
        if not name:
            raise SubstitutionError(f"bad substitution in {self.text!r}: missing a variable name after ${{")
        if self.peek() == "}":
            self.pos += 1
            return self.env.get(name, "")
        colon = self.peek() == ":"
        if colon:
            self.pos += 1
        operator = self.take()
        if operator not in ("-", "+", "?"):
            raise SubstitutionError(f"unsupported modifier {operator!r} in ${{{name}...}} in {self.text!r}")
        word = "".join(self.words(split=False, stop="}"))
        if self.take() != "}":
            raise SubstitutionError(f"missing '}}' in {self.text!r}")
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if operator == "-":
            return value if is_set else word  # type: ignore[return-value]
        if operator == "+":
            return word if is_set else ""
        if not is_set:
            raise SubstitutionError(f"{name}: {word or 'is not set'}")
        return value  # type: ignore[return-value]


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word with its quotes removed and variables expanded."""
    return "".join(_Lexer(word, env, escape).words(split=False))


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """A line expanded and split into words (COPY sources, EXPOSE, VOLUME, USER...)."""
    return _Lexer(text, env, escape).words(split=True)


def key_values(text: str, env: Mapping[str, str], escape: str = "\\", legacy: bool = True) -> list[tuple[str, str]]:
    """`ENV`/`LABEL`/`ARG` pairs: `a=1 b="two words"`, or docker's old `KEY value with spaces` form.

    Keys are expanded too (LABEL "$NAME"=x); a key without `=` in the list form has value None-like
    empty string only for ARG, which the caller handles.
    """
    words = split_words(text, escape)
    if not words:
        return []
    if legacy and "=" not in words[0]:
        key = expand(words[0], env, escape)
        rest = text.strip()[len(words[0]) :].strip()
        return [(key, expand(rest, env, escape))]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise SubstitutionError(f"{word!r}: expected KEY=VALUE")
        pairs.append((expand(key, env, escape), expand(value, env, escape)))
    return pairs
