"""A `.env` file as a document that scaffold can edit without disturbing anything else in it.

Operators edit `.env` by hand, so scaffold must change only the value it was asked to change and keep every
other byte (comments, spacing, line endings, lines it does not understand) exactly as the user left it.
Values are read with python-dotenv's own parser, so what scaffold sees is what python-dotenv sees, and they
are written in a form that python-dotenv and Docker Compose both read back unchanged. Nothing here writes to
disk: callers render the document and store it with `scaffold.fsutil.atomic_write_text`.
"""

from __future__ import annotations

import bisect
import io
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from scaffold import composeenv
from scaffold.errors import EnvFileError

# The regexes python-dotenv's parser uses (dotenv/parser.py), to find where a value sits inside a line. After
# every edit the new text is parsed again with python-dotenv itself, so a drift here can only make `set`
# refuse, never write something that reads back differently. They are compiled on first use (`re` caches
# them), not at import: the CLI imports this module on every start.
_NEWLINE = r"\r\n|\n|\r"
_LEADING_SPACE = r"\s*"
_EXPORT = r"export[^\S\r\n]+"
_SINGLE_QUOTED_KEY = r"'[^']+'"
_UNQUOTED_KEY = r"[^=\#\s]+"
_SPACES = r"[^\S\r\n]*"
_EQUALS = r"=[^\S\r\n]*"
_SINGLE_QUOTED_VALUE = r"'(?:\\'|[^'])*'"
_DOUBLE_QUOTED_VALUE = r'"(?:\\"|[^"])*"'
_UNQUOTED_VALUE = r"[^\r\n]*"
_INLINE_COMMENT = r"\s+#.*"

# A name that shells accept and that compose.yaml can reference as ${NAME}.
_VALID_KEY = r"[A-Za-z_][A-Za-z0-9_]*"
# Values made only of these characters are written without quotes.
_BARE_VALUE = r"[A-Za-z0-9_./:@+,=-]*"
# `NAME=` or `NAME:` (Docker Compose also accepts the YAML-like form) at the start of a line python-dotenv
# cannot parse: the key the user most likely meant.
_GUESSED_KEY = r"(?:export[^\S\r\n]+)?['\"]?([^\s=:#'\"]+)['\"]?[^\S\r\n]*[=:]"
_PINNED = r"(?i)\bpinned\b"
_BOM = "\ufeff"


@dataclass(frozen=True)
class EnvProblem:
    """Something in `.env` that scaffold keeps as it is but that the user should fix by hand."""

    line: int
    key: str | None
    message: str  # what is wrong and how to fix it; never contains a value (values may be secrets)
    # True when python-dotenv (what scaffold reads) and Docker Compose (what the stack runs with) may not
    # agree on which keys the file sets: nothing may be generated or written until the line is fixed.
    blocking: bool = False

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class _Entry:
    """One statement as python-dotenv parsed it, with where its parts sit in the document's text."""

    start: int
    end: int
    line: int  # 1-based line of its first non-blank character
    key: str | None  # as python-dotenv reads it (None for comments, blank lines and unparsable lines)
    value: str | None  # as python-dotenv reads it (None when there is no `=`)
    error: bool  # python-dotenv could not parse it
    guessed_key: str | None = None  # for unparsable lines: the key it seems to be about
    export: bool = False
    quoted_key: bool = False
    value_start: int | None = None  # absolute offsets of the value as written, quotes included
    value_end: int | None = None
    style: str | None = None  # "bare", "single" or "double"
    comment: str | None = None  # the trailing `# ...` comment, if any
    hash_value: bool = False  # `KEY= #...`: looks like a comment but is the value

    @property
    def well_formed(self) -> bool:
        """True when scaffold may rewrite this statement's value in place."""
        return (
            not self.error
            and self.key is not None
            and not self.export
            and not self.quoted_key
            and self.value_start is not None
            and not self.key.startswith(_BOM)
        )


class EnvDocument:
    """A `.env` text and python-dotenv's reading of it; an edit touches only the value it changes."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._entries = _scan(text)

    @classmethod
    def parse(cls, text: str) -> EnvDocument:
        """Parse `text` (a str with its line endings untouched, as `load` produces)."""
        return cls(text)

    @classmethod
    def load(cls, path: Path) -> EnvDocument:
        """Read `path` as UTF-8 keeping its bytes (CRLF, BOM) intact; a missing file is an empty document.

        A symbolic link is refused (`scaffold.fsutil.refuse_symlink`), never followed.
        """
        from scaffold.fsutil import read_bytes_no_follow  # only here: parsing never touches the disk

        try:
            data = read_bytes_no_follow(path)
            if data is None:
                return cls("")
        except IsADirectoryError:
            raise EnvFileError(
                f"{path} is a directory, not a .env file",
                hint=f"move the directory out of the way (e.g. `mv {path} {path}.dir`) and run again",
            ) from None
        except PermissionError:
            raise EnvFileError(
                f"cannot read {path}: permission denied",
                hint="run scaffold as the user who owns the file, or give that user read access (chmod u+r)",
            ) from None
        except OSError as exc:
            raise EnvFileError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="check that the file is a regular, readable file",
            ) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise EnvFileError(
                f"{path} is not valid UTF-8 (line {line})",
                hint="re-save the file as UTF-8 in your editor (e.g. `iconv -f latin1 -t utf-8`)",
            ) from None
        return cls(text)

    def render(self) -> str:
        """The document's text: exactly the parsed text until something is `set`."""
        return self._text

    def get(self, key: str) -> str | None:
        """The value python-dotenv reads for `key` (the last occurrence wins), without `${}` interpolation."""
        entry = self._effective(key)
        return None if entry is None else entry.value

    def keys(self) -> list[str]:
        """Every key python-dotenv reads, in order of first appearance."""
        return list(dict.fromkeys(e.key for e in self._entries if e.key is not None))

    def is_pinned(self, key: str) -> bool:
        """True when the line that sets `key` ends with a comment containing the word `pinned`."""
        entry = self._effective(key)
        return (
            entry is not None
            and entry.comment is not None
            and bool(re.compile(_PINNED).search(entry.comment))
        )

    def set(self, key: str, value: str, *, comment: str | None = None) -> bool:
        """Give `key` the value `value`; True when the text changed.

        An existing key keeps its line (indentation, quoting style where possible, trailing comment); only the
        value is replaced. A new key is appended at the end, after `# comment` lines when `comment` is given.
        Refuses (EnvFileError) a key that appears on a malformed line: that line belongs to the user.
        """
        _check_key(key)
        _check_value(key, value)
        blocker = self._malformed_line_of(key)
        if blocker is not None:
            raise EnvFileError(
                f"cannot set {key}: line {blocker.line} of .env holds {key} but is {_describe(blocker)}",
                hint=f"fix line {blocker.line} by hand ({_fix_for(blocker)}), then run again",
            )
        entry = self._effective(key)
        if entry is not None:
            if entry.value == value:
                return False
            assert entry.value_start is not None and entry.value_end is not None  # well-formed, checked above
            written = _encode(key, value, prefer=entry.style)
            new_text = self._text[: entry.value_start] + written + self._text[entry.value_end :]
        else:
            eol = self._line_ending()
            head = self._text
            if head and not head.endswith(("\n", "\r")):
                head += eol
            lines = (
                [] if comment is None else [f"# {c}".rstrip() for c in re.compile(_NEWLINE).split(comment)]
            )
            lines.append(f"{key}={_encode(key, value, prefer=None)}")
            new_text = head + "".join(line + eol for line in lines)
        self._replace_text(new_text, key, value, entry)
        return True

    def comment(self, key: str) -> str | None:
        """The trailing `# ...` comment of the line that sets `key` (without the `#`), if any."""
        entry = self._effective(key)
        if entry is None or entry.comment is None:
            return None
        return entry.comment[1:].strip()

    def set_comment(self, key: str, comment: str | None) -> bool:
        """Replace (or with None remove) the trailing comment of `key`'s line; True when the text changed.

        Used to flag a value scaffold could not verify on the value's own line, where the user sees it.
        """
        if comment is not None:
            _check_value(key, comment)
        entry = self._effective(key)
        if entry is None:
            return False
        blocker = self._malformed_line_of(key)
        if blocker is not None:
            raise EnvFileError(
                f"cannot annotate {key}: line {blocker.line} of .env holds {key} but is {_describe(blocker)}",
                hint=f"fix line {blocker.line} by hand ({_fix_for(blocker)}), then run again",
            )
        if (None if entry.comment is None else entry.comment[1:].strip()) == comment:
            return False
        assert entry.value_end is not None  # well-formed, checked above
        statement = self._text[entry.start : entry.end]
        ending = re.compile(r"(?:\r\n|\n|\r)?\Z").search(statement)
        assert ending is not None
        line_end = entry.start + ending.start()
        suffix = "" if comment is None else f"  # {comment}"
        new_text = self._text[: entry.value_end] + suffix + self._text[line_end:]
        self._replace_text(new_text, key, entry.value or "", entry)
        return True

    def problems(self) -> list[EnvProblem]:
        """Lines python-dotenv or Docker Compose read differently from what the user probably meant."""
        found: list[EnvProblem] = []
        bom_entry = self._entries[0] if self._text.startswith(_BOM) and self._entries else None
        if bom_entry is not None:
            key = (bom_entry.key or "")[1:] or None
            seen = f"reads it as part of the name {key}, so scaffold cannot see {key}" if key else "does not"
            found.append(
                EnvProblem(
                    1,
                    key,
                    f"the file starts with a UTF-8 byte-order mark (BOM): Docker Compose skips it but "
                    f"python-dotenv {seen}; fix: save the file as UTF-8 without BOM "
                    "(`sed -i '1s/^\\xEF\\xBB\\xBF//' .env`)",
                    blocking=key is not None,
                )
            )
        for entry in self._entries:
            if entry.error:
                found.append(
                    EnvProblem(entry.line, entry.guessed_key, _unparsable_message(entry), blocking=True)
                )
            elif entry.key is not None and entry is not bom_entry:
                found.extend(
                    EnvProblem(entry.line, entry.key, m) for m in _statement_problems(entry, entry.key)
                )
        found.extend(self._duplicate_problems())
        found.extend(self._compose_problems())
        crlf = self._text.find("\r\n")
        if crlf >= 0:
            found.append(
                EnvProblem(
                    self._line_of(crlf),
                    None,
                    "the file has Windows (CRLF) line endings: python-dotenv and Docker Compose cope, but "
                    "shells and other tools read a stray carriage return into values; fix: convert the file "
                    "to LF line endings (`sed -i 's/\\r$//' .env`, or `dos2unix .env`)",
                )
            )
        found.sort(key=lambda p: p.line)
        return found

    def blocking_problems(self) -> list[EnvProblem]:
        """The problems that make python-dotenv and Docker Compose disagree on which keys exist.

        While there is one, scaffold cannot tell whether a key it does not see is missing or is a secret
        Compose uses, so callers must write nothing (a generated secret would replace the real one).
        """
        return [problem for problem in self.problems() if problem.blocking]

    # -- internals ----------------------------------------------------------------------------------------

    def _compose_problems(self) -> list[EnvProblem]:
        """Where Docker Compose refuses the file, or reads other keys or values than python-dotenv."""
        compose = composeenv.read(self._text, os.environ)  # Compose runs in this same shell
        if compose.error is not None:
            assert compose.error_offset is not None
            return [
                EnvProblem(
                    self._line_of(compose.error_offset),
                    None,
                    f"Docker Compose refuses .env here ({_without_values(compose.error)}), so the stack "
                    f"cannot start, and scaffold cannot tell which keys Compose would read; fix: {_LINE_FIX}",
                    blocking=True,
                )
            ]
        found: list[EnvProblem] = []
        ours = {
            (e.key[1:] if e.key.startswith(_BOM) and e.start == 0 else e.key): e
            for e in self._entries
            if e.key is not None and e.value is not None
        }
        theirs = {s.key: s for s in compose.statements if s.value is not None}
        python_only = [e for key, e in ours.items() if key not in theirs and not e.key.startswith(_BOM)]
        for entry in python_only:
            found.append(
                EnvProblem(
                    entry.line,
                    entry.key,
                    f"python-dotenv reads {entry.key} on this line but Docker Compose does not (it reads the "
                    f"line as part of another statement); fix: {_LINE_FIX}",
                    blocking=True,
                )
            )
        for key, statement in theirs.items():
            if key not in ours:
                found.append(
                    EnvProblem(
                        self._line_of(statement.offset),
                        None,
                        # The name is not shown: Compose may be reading part of a quoted value as one.
                        "Docker Compose reads a variable on this line that python-dotenv does not see, so "
                        f"scaffold cannot see it either; fix: {_LINE_FIX}",
                        blocking=True,
                    )
                )
            elif ours[key].value != statement.value and not ours[key].error:
                found.append(
                    EnvProblem(
                        ours[key].line,
                        key,
                        f"python-dotenv and Docker Compose read different values for {key} (values not "
                        "shown): Compose replaces `$NAME` and `${...}` outside single quotes, and the two "
                        "expand backslash escapes in double quotes differently; fix: write the value in "
                        "single quotes without backslashes, or `$$` for a literal `$` outside single quotes",
                    )
                )
        return found

    def _effective(self, key: str) -> _Entry | None:
        """The last statement that sets `key`: the one python-dotenv and Docker Compose use."""
        for entry in reversed(self._entries):
            if entry.key == key:
                return entry
        return None

    def _malformed_line_of(self, key: str) -> _Entry | None:
        """The first line that holds `key` in a form scaffold must not rewrite, if any."""
        for entry in self._entries:
            if entry.error and entry.guessed_key == key:
                return entry
            if entry.key is not None and entry.key.lstrip(_BOM) == key and not entry.well_formed:
                return entry
        return None

    def _duplicate_problems(self) -> list[EnvProblem]:
        seen: dict[str, list[int]] = {}
        for entry in self._entries:
            if entry.key is not None:
                seen.setdefault(entry.key, []).append(entry.line)
        found = []
        for key, lines in seen.items():
            winner = lines[-1]
            for index, line in enumerate(lines[1:], start=1):
                earlier = ", ".join(str(n) for n in lines[:index])
                found.append(
                    EnvProblem(
                        line,
                        key,
                        f"{key} is set again (already on line {earlier}); the last one, line {winner}, is "
                        "the one python-dotenv and Docker Compose use; fix: delete the lines you do not want",
                    )
                )
        return found

    def _line_ending(self) -> str:
        """The file's own line ending: CRLF when most lines use it, else LF."""
        crlf = self._text.count("\r\n")
        return "\r\n" if crlf > self._text.count("\n") - crlf else "\n"

    def _line_of(self, offset: int) -> int:
        ends = [m.end() for m in re.compile(_NEWLINE).finditer(self._text, 0, offset + 1)]
        return bisect.bisect_right(ends, offset) + 1

    def _replace_text(self, new_text: str, key: str, value: str, edited: _Entry | None) -> None:
        """Adopt `new_text` only if python-dotenv reads it as the old document with just `key` changed."""

        def reading(entries: list[_Entry]) -> list[tuple[str | None, str | None, bool, str | None]]:
            return [(e.key, e.value, e.error, e.guessed_key) for e in entries if e.key is not None or e.error]

        expected = reading(self._entries)
        if edited is None:
            expected.append((key, value, False, None))
        else:
            index = [e for e in self._entries if e.key is not None or e.error].index(edited)
            expected[index] = (key, value, False, None)
        new_entries = _scan(new_text)
        if reading(new_entries) != expected:
            broken = next((e for e in self._entries if e.error), None)
            where = f"line {broken.line} is malformed and " if broken else ""
            raise EnvFileError(
                f"cannot set {key} safely: {where}the change would alter how other lines of .env are read",
                hint="fix the lines scaffold reports as malformed (an unclosed quote swallows the lines "
                "after it), then run again",
            )
        self._text = new_text
        self._entries = new_entries


#: Where `dotenv_parser` keeps the module it loaded (a name of its own: see there).
_PARSER_MODULE = "_scaffold_dotenv_parser"


def dotenv_parser() -> ModuleType:
    """python-dotenv's `dotenv/parser.py`, loaded without running the package's `__init__`.

    `import dotenv.parser` first runs `dotenv/__init__.py`, whose `dotenv.main` imports logging (with
    traceback and textwrap) and tempfile: ~10 ms on every copier task for a parser that needs only `re`
    and `codecs`. This runs the same file (with its bytecode cache) under a private module name, so a
    later `import dotenv` is unaffected. An installation where the file cannot be found that way (a
    zipped package) gets the ordinary import.
    """
    loaded = sys.modules.get("dotenv.parser") or sys.modules.get(_PARSER_MODULE)
    if loaded is not None:
        return loaded
    import importlib.util

    package = importlib.util.find_spec("dotenv")  # finds the package without running it
    folders = list(package.submodule_search_locations or ()) if package else []
    path = Path(folders[0], "parser.py") if folders else None
    spec = importlib.util.spec_from_file_location(_PARSER_MODULE, path) if path and path.is_file() else None
    if spec is None or spec.loader is None:
        import dotenv.parser

        return dotenv.parser
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_PARSER_MODULE] = module
    return module


def _scan(text: str) -> list[_Entry]:
    """Split `text` into python-dotenv's statements, keeping where each one sits."""
    line_ends = [m.end() for m in re.compile(_NEWLINE).finditer(text)]
    entries: list[_Entry] = []
    offset = 0
    for binding in dotenv_parser().parse_stream(io.StringIO(text, newline="")):
        original = binding.original.string
        if not original or not text.startswith(original, offset):
            raise RuntimeError("python-dotenv's parser did not consume .env contiguously; please report this")
        lead = re.compile(_LEADING_SPACE).match(original)
        assert lead is not None  # `\s*` always matches
        line = bisect.bisect_right(line_ends, offset + lead.end()) + 1
        entries.append(_analyse(binding.key, binding.value, binding.error, original, offset, line))
        offset += len(original)
    if offset != len(text):
        raise RuntimeError("python-dotenv's parser did not consume all of .env; please report this")
    return entries


def _analyse(key: str | None, value: str | None, error: bool, original: str, start: int, line: int) -> _Entry:
    """Locate the parts of one statement the way python-dotenv's parser reads it."""
    end = start + len(original)
    lead = re.compile(_LEADING_SPACE).match(original)
    assert lead is not None
    pos = lead.end()
    if error:
        guess = re.compile(_GUESSED_KEY).match(original, pos)
        return _Entry(start, end, line, None, None, True, guessed_key=guess.group(1) if guess else None)
    if key is None:
        return _Entry(start, end, line, None, None, False)
    export = re.compile(_EXPORT).match(original, pos)
    if export:
        pos = export.end()
    quoted_key = original.startswith("'", pos)
    name = re.compile(_SINGLE_QUOTED_KEY if quoted_key else _UNQUOTED_KEY).match(original, pos)
    plain = _Entry(start, end, line, key, value, False, export=bool(export), quoted_key=quoted_key)
    if name is None:
        return plain  # cannot happen with python-dotenv 1.x; leaving the value unlocated makes it read-only
    pos = _match_end(_SPACES, original, name.end())
    equals = re.compile(_EQUALS).match(original, pos)
    if value is None or equals is None:
        return plain
    pos = equals.end()
    first = original[pos : pos + 1]
    hash_value = False
    if first in ("'", '"'):
        quoted = re.compile(_SINGLE_QUOTED_VALUE if first == "'" else _DOUBLE_QUOTED_VALUE).match(
            original, pos
        )
        if quoted is None:
            return plain
        value_end, style = quoted.end(), "single" if first == "'" else "double"
    else:
        raw = original[pos : _match_end(_UNQUOTED_VALUE, original, pos)]
        shown = re.compile(_INLINE_COMMENT).sub("", raw).rstrip()
        value_end, style = pos + len(shown), "bare"
        hash_value = shown.startswith("#") and equals.end() - equals.start() > 1
    tail = original[value_end:].strip()
    return _Entry(
        start,
        end,
        line,
        key,
        value,
        False,
        export=bool(export),
        quoted_key=quoted_key,
        value_start=start + pos,
        value_end=start + value_end,
        style=style,
        comment=tail if tail.startswith("#") else None,
        hash_value=hash_value,
    )


def _match_end(pattern: str, text: str, pos: int) -> int:
    """End of a match of a pattern that always matches (it ends in `*`)."""
    match = re.compile(pattern).match(text, pos)
    assert match is not None
    return match.end()


def _check_key(key: str) -> None:
    if not re.compile(_VALID_KEY).fullmatch(key):
        raise EnvFileError(
            f"{key!r} is not a valid .env variable name",
            hint="use only letters, digits and `_`, not starting with a digit",
        )


def _check_value(key: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise EnvFileError(
            f"the value for {key} contains a line break, which scaffold does not write into .env",
            hint="use a value on a single line",
        )
    if "\0" in value:
        raise EnvFileError(
            f"the value for {key} contains a NUL character, which no environment variable can hold",
            hint="remove the NUL character from the value",
        )


def _bare(value: str) -> str | None:
    return value if re.compile(_BARE_VALUE).fullmatch(value) else None


def _single(value: str) -> str | None:
    # Docker Compose keeps `\\` inside single quotes while python-dotenv reads `\`; a final `\` would
    # escape the closing quote for both.
    if "'" in value or "\\\\" in value or value.endswith("\\"):
        return None
    return f"'{value}'"


def _double(value: str) -> str | None:
    # Docker Compose interpolates `$` inside double quotes and python-dotenv does not; python-dotenv takes
    # `\\"` at the end for an escaped quote.
    if "$" in value or value.endswith("\\"):
        return None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _single_escaped(value: str) -> str | None:
    # Both parsers read `\'` as `'` inside single quotes; they disagree on `\\`.
    if "\\\\" in value or "\\'" in value or value.endswith("\\"):
        return None
    return "'" + value.replace("'", "\\'") + "'"


def _unquoted(value: str) -> str | None:
    # Without quotes both parsers take the rest of the line literally, except that they cut `<space>#...`
    # comments, trim surrounding whitespace, and Docker Compose interpolates `$`.
    if not value or "$" in value or value[0] in "'\"" or value[0].isspace() or value[-1].isspace():
        return None
    if any(value[i] == "#" and value[i - 1].isspace() for i in range(1, len(value))):
        return None
    return value


_STYLES = {"bare": _bare, "single": _single, "double": _double}


def _encode(key: str, value: str, *, prefer: str | None) -> str:
    """`value` written so that python-dotenv and Docker Compose both read exactly `value` back."""
    preferred = _STYLES.get(prefer or "")
    for form in (preferred, _bare, _single, _double, _single_escaped, _unquoted):
        written = form(value) if form is not None else None
        if written is not None:
            return written
    raise EnvFileError(
        f"the value for {key} cannot be written so that Docker Compose and python-dotenv both read it "
        "unchanged: they disagree on `$` and on backslashes inside quotes, and a value that ends with a "
        "backslash cannot be quoted at all",
        hint="choose a value without backslashes (or without `$`)",
    )


#: (does it apply, what the line is, how to fix it) for a line that holds a key but is not `NAME=value`.
_LINE_PROBLEMS: tuple[tuple[Callable[[_Entry], bool], str, str], ...] = (
    (
        lambda entry: bool(entry.error),
        "malformed (python-dotenv cannot parse it)",
        "make it `NAME=value`, with the value in single quotes if it holds spaces, quotes or `#`",
    ),
    (
        lambda entry: entry.key is not None and entry.key.startswith(_BOM),
        "prefixed by a byte-order mark",
        "save the file as UTF-8 without BOM",
    ),
    (
        lambda entry: bool(entry.export),
        "written with an `export ` prefix",
        "delete `export ` at the start of the line",
    ),
    (lambda entry: bool(entry.quoted_key), "written with a quoted name", "remove the quotes around the name"),
)


def _problem(entry: _Entry) -> tuple[str, str]:
    """What is wrong with a line that holds a key but is not `NAME=value`, and how to fix it."""
    for applies, what, fix in _LINE_PROBLEMS:
        if applies(entry):
            return what, fix
    return "missing its `=`", "write `NAME=value`"


def _describe(entry: _Entry) -> str:
    return _problem(entry)[0]


def _fix_for(entry: _Entry) -> str:
    return _problem(entry)[1]


def _statement_problems(entry: _Entry, key: str) -> list[str]:
    """What is wrong with one statement python-dotenv could parse, each with its fix."""
    found = []
    if entry.quoted_key:
        found.append(
            f"the name {key} is in quotes: python-dotenv accepts that but Docker Compose rejects the file; "
            f"fix: remove the quotes around {key}"
        )
    elif not re.compile(_VALID_KEY).fullmatch(key):
        found.append(
            f"{key!r} is not a valid variable name: compose.yaml cannot use it as ${{NAME}} and Docker "
            "Compose may reject it; fix: use only letters, digits and `_`, not starting with a digit (or "
            "comment the line out with `#`)"
        )
    if entry.export:
        found.append(
            f"`export {key}=...`: the `export ` prefix belongs in shell scripts, and scaffold will not "
            "rewrite this line; fix: delete `export ` at the start of the line"
        )
    if entry.value is None:
        found.append(
            f"{key} has no `=`: python-dotenv reads no value and Docker Compose takes {key} from the shell "
            f"environment instead; fix: write `{key}=value`, or comment the line out with `#`"
        )
    if entry.hash_value:
        found.append(
            f"the value of {key} starts with `#`: after `=` that is the value, not a comment; fix: for an "
            f"empty value with a comment write `{key}='' # ...`, or remove the space after `=`"
        )
    return found


#: How to write a line both readers take the same way; the commonest trap first.
_LINE_FIX = (
    "make every line `NAME=value`; a backslash right before a closing single quote escapes that quote, so "
    "`'C:\\'` runs on to the next `'` in the file: write such a value unquoted (`NAME=C:\\`) or in double "
    'quotes with the backslash doubled (`NAME="C:\\\\"`); nothing is written until then'
)


def _without_values(message: str) -> str:
    """Compose's message without the text it quotes from the file (it may be part of a secret)."""
    return re.compile(r"(?s)(unterminated quoted value|Invalid template:|in variable name) .*").sub(
        r"\1 ...", message
    )


def _unparsable_message(entry: _Entry) -> str:
    about = f" (it seems to set {entry.guessed_key})" if entry.guessed_key else ""
    return (
        f"python-dotenv cannot parse this line{about} and skips it, and Docker Compose may reject the file "
        "or read it differently; usual causes are an unclosed quote, a backslash right before a closing "
        "quote (`'C:\\'`: it escapes the quote), text after a closing quote, a space in the name, or "
        "`NAME: value`; fix: write `NAME=value` with the value in single quotes (a value ending in a "
        "backslash: unquoted), or comment the line out with `#`"
    )
