"""`.env` as Docker Compose reads it: a port of compose-go's dotenv parser and its `${...}` interpolation.

scaffold reads `.env` with python-dotenv, but the stack runs with what Docker Compose reads, and the two parse
some lines differently (a backslash before a closing quote, text after a quote, names with odd characters,
`NAME: value`, `$` in values). When they disagree about which keys exist, a key scaffold cannot see may be one
Compose uses, and generating it again would replace a secret. This module answers "what does Compose read?"
without running Compose, so that `scaffold.envfile` can refuse to write until the two agree.

Ported from compose-go v2 (`dotenv/parser.go`, `dotenv/env.go`, `template/template.go`, Apache-2.0), the
parser Docker Compose v2 uses for the project's `.env`. tests/test_envfile.py checks this port against the
real `docker compose` binary on generated files.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_BOM = "\ufeff"
# Go's unicode.IsSpace: ASCII and Latin-1 spaces plus Unicode's White_Space property.
_GO_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
# compose-go's own isSpace: a space that is not a line break.
_INLINE_SPACES = frozenset("\t\v\f\r \x85\xa0")
_EXPORT = re.compile(r"export[\t\n\f\r ]+")  # Go's \s is ASCII only and has no \v
_NAME_PUNCTUATION = frozenset("_.-[]")
_ESCAPE = re.compile(r'(\\(?:[abcfnrtv$"\\]|0\d{0,3}))')
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "c": None, "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_TEMPLATE = re.compile(
    r"\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|"
    r"{(?:(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)}|(?P<invalid>)))"
)
_OPERATORS = (":?", "?", ":-", "-", ":+", "+")

Lookup = Callable[[str], "str | None"]


@dataclass(frozen=True)
class ComposeStatement:
    """One `NAME=value` (or inherited `NAME`) statement as Compose reads it."""

    key: str
    value: str | None  # None for a bare `NAME` line: Compose takes NAME from the shell, if it is set there
    offset: int  # where the statement starts in the text


@dataclass(frozen=True)
class ComposeReading:
    """Everything Compose reads from a `.env` text, or where and why it refuses the file."""

    statements: tuple[ComposeStatement, ...]
    error: str | None = None  # Compose's own words, e.g. `unexpected character "(" in variable name`
    error_offset: int | None = None

    def values(self, environment: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables the file sets (bare `NAME` lines only when `environment` has NAME)."""
        found: dict[str, str] = {}
        for statement in self.statements:
            if statement.value is not None:
                found[statement.key] = statement.value
            elif environment is not None and statement.key in environment:
                found[statement.key] = environment[statement.key]
        return found


class _Refused(Exception):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def read(text: str, environment: Mapping[str, str] | None = None) -> ComposeReading:
    """What `docker compose` reads from `.env` with this `text`, in a shell that has `environment`.

    `environment` matters only for `${...}` in values and bare `NAME` lines; None means an empty one.
    """
    env = dict(environment or {})
    offset = len(_BOM) if text.startswith(_BOM) else 0
    parser = _Parser(text, offset, env)
    try:
        parser.run()
    except _Refused as refused:
        return ComposeReading(tuple(parser.statements), refused.message, refused.position)
    return ComposeReading(tuple(parser.statements))


class _Parser:
    """compose-go's `parser.parse`, walking absolute positions so that each statement knows its line."""

    def __init__(self, text: str, start: int, environment: dict[str, str]) -> None:
        self.text = text
        self.pos = start
        self.environment = environment
        self.values: dict[str, str] = {}
        self.statements: list[ComposeStatement] = []

    def lookup(self, name: str) -> str | None:
        if name in self.environment:
            return self.environment[name]
        return self.values.get(name)

    def run(self) -> None:
        while True:
            self.pos = self._statement_start(self.pos)
            if self.pos >= len(self.text):
                return
            start = self.pos
            key, inherited = self._key_name()
            if " " in key:
                raise _Refused("key cannot contain a space", start)
            if inherited:
                value = self.lookup(key)
                if value is not None:
                    self.values[key] = value
                self.statements.append(ComposeStatement(key, None, start))
                continue
            value = self._value(start)
            self.values[key] = value
            self.statements.append(ComposeStatement(key, value, start))

    def _statement_start(self, pos: int) -> int:
        """The first character of the next statement, skipping blanks and `#` comment lines."""
        text = self.text
        while True:
            while pos < len(text) and text[pos] in _GO_SPACES:
                pos += 1
            if pos >= len(text) or text[pos] != "#":
                return pos
            newline = text.find("\n", pos)
            if newline < 0:
                return len(text)
            pos = newline

    def _key_name(self) -> tuple[str, bool]:
        """The name at `self.pos`; moves past `=`, `:` or the line break that ends it."""
        text, pos = self.text, self.pos
        export = _EXPORT.match(text, pos)
        if export:
            pos += len("export")
            while pos < len(text) and text[pos] in _INLINE_SPACES:
                pos += 1
        begin = pos
        end = None
        inherited = False
        for index in range(begin, len(text)):
            char = text[index]
            if char in _INLINE_SPACES:
                continue
            if char in "=:\n":
                end, inherited = index, char == "\n"
                break
            if char in _NAME_PUNCTUATION or unicodedata.category(char)[0] in "LN":
                continue
            first_line = text[begin:].split("\n", 1)[0]
            raise _Refused(
                f"unexpected character {_go_quote(char)} in variable name {_go_quote(first_line)}", index
            )
        if begin >= len(text):
            raise _Refused("zero length string", begin)
        if end is None:  # the last line has no `=`: compose-go reads the line as the value of an empty name
            key, after = "", begin
        else:
            key, after = text[begin:end], end + 1
        while after < len(text) and text[after] in _INLINE_SPACES:
            after += 1
        self.pos = after
        return key.rstrip("".join(_GO_SPACES)), inherited

    def _value(self, start: int) -> str:
        text, pos = self.text, self.pos
        quote = text[pos] if pos < len(text) and text[pos] in "'\"" else None
        if quote is None:
            newline = text.find("\n", pos)
            end = len(text) if newline < 0 else newline
            value = text[pos:end].split(" #", 1)[0].rstrip("".join(_GO_SPACES))
            self.pos = end + 1 if newline >= 0 else end
            return self._expand(value, start)
        chars: list[str] = []
        escaped = False
        for index in range(pos + 1, len(text)):
            char = text[index]
            if char != quote:
                if not escaped and char == "\\":
                    escaped = True
                    continue
                if escaped:
                    escaped = False
                    chars.append("\\")
                chars.append(char)
                continue
            if escaped:
                escaped = False
                chars.append(char)
                continue
            self.pos = index + 1
            value = "".join(chars)
            return self._expand(_expand_escapes(value), start) if quote == '"' else value
        line_end = text.find("\n", pos)
        shown = text[pos : len(text) if line_end < 0 else line_end]
        raise _Refused(f"unterminated quoted value {shown}", pos)

    def _expand(self, value: str, start: int) -> str:
        try:
            return substitute(value, self.lookup)
        except _TemplateError as exc:
            raise _Refused(str(exc), start) from None


def _go_quote(text: str) -> str:
    """Go's %q, close enough for messages."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _expand_escapes(value: str) -> str:
    """Shell-style escapes in a double-quoted value, exactly those compose-go expands."""

    def replace(match: re.Match[str]) -> str:
        escape = match.group(0)
        if escape == "\\$":
            return "$$"  # left for interpolation, which reads `$$` as a literal `$`
        if escape.startswith("\\0"):
            digits = escape[2:]
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) <= 255:
                return chr(int(digits, 8))
            return escape
        letter = escape[1]
        if letter in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[letter] or escape  # Go has no `\c`: kept as written
        return letter  # `\"` and `\\`

    return _ESCAPE.sub(replace, value)


class _TemplateError(Exception):
    pass


def substitute(template: str, lookup: Lookup) -> str:
    """compose-go's `template.Substitute`: `$NAME`, `${NAME}`, `${NAME:-default}`, `$$`, ... ."""
    error: _TemplateError | None = None

    def replace(match: re.Match[str]) -> str:
        nonlocal error
        try:
            return _replacement(match.group(0), lookup)
        except _TemplateError as exc:
            error = error or exc
            return ""

    result = _TEMPLATE.sub(replace, template)
    if error is not None:
        raise error if str(error) else _TemplateError(f'Invalid template: "{template}"')
    return result


def _replacement(substring: str, lookup: Lookup) -> str:
    operator = _first_operator(substring)
    close = _first_closing_brace(substring)
    rest = ""
    if close > -1:
        substring, rest = substring[: close + 1], substring[close + 1 :]
    match = _TEMPLATE.search(substring)
    assert match is not None  # the substring starts with what the pattern matched
    if match.group("escaped"):
        return "$"
    name = match.group("named")
    if not name:
        braced = match.group("braced")
        if not braced:
            raise _TemplateError("")
        applied = _apply_operator(operator, braced, lookup)
        if applied is not None:
            return applied + substitute(rest, lookup)
        name = braced
    value = lookup(name)
    return "" if value is None else value


def _first_operator(substring: str) -> str | None:
    found = [(substring.find(op), i, op) for i, op in enumerate(_OPERATORS) if op in substring]
    return min(found)[2] if found else None


def _first_closing_brace(text: str) -> int:
    depth = 0
    index = 0
    while index < len(text):
        if text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        if text[index] == "{":
            depth += 1
            index += 1
        index += 1
    return -1


def _apply_operator(operator: str | None, substitution: str, lookup: Lookup) -> str | None:
    """The value of `${NAME<op>word}`, or None when `substitution` has no operator."""
    if operator is None or operator not in substitution:
        return None
    name, word = substitution.split(operator, 1)
    word = substitute(word, lookup)
    value = lookup(name)
    if operator in (":?", "?"):
        if value is None or (operator == ":?" and value == ""):
            reason = f": {word}" if word else ""
            raise _TemplateError(f"required variable {name} is missing a value{reason}")
        return value
    if operator in (":-", "-"):
        return word if value is None or (operator == ":-" and value == "") else value
    present = value is not None and (operator == "+" or value != "")
    return word if present else ("" if value is None else value)
