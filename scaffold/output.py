"""Printing for humans: colour only on a terminal, never when NO_COLOR is set.

Every message goes through here so that status words look the same everywhere and no
command has to think about terminals.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from scaffold.detect import DetectReport

_CODES = {"ok": "32", "warn": "33", "fail": "31", "info": "36", "bold": "1"}


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def paint(text: str, style: str, stream: TextIO | None = None) -> str:
    if not use_colour(stream or sys.stdout) or style not in _CODES:
        return text
    return f"\033[{_CODES[style]}m{text}\033[0m"


def say(text: str = "", *, stream: TextIO | None = None) -> None:
    # Streams are looked up at call time, so redirections (and pytest's capture) are honoured.
    print(text, file=stream or sys.stdout, flush=True)


def status(word: str, text: str, *, style: str | None = None, stream: TextIO | None = None) -> None:
    """One line: a fixed-width status word, then the message."""
    say(f"{paint(f'{word:<5}', style or word, stream)} {text}", stream=stream)


def error(message: str, hint: str | None = None, *, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    say(f"{paint('error:', 'fail', stream)} {message}", stream=stream)
    if hint:
        say(f"  {paint('fix:', 'bold', stream)} {hint}", stream=stream)


def print_detect_report(report: DetectReport, *, stream: TextIO | None = None) -> None:
    """What a detection changed (never a secret's value), what to know, and what to fix (stderr by default).

    Shared by `scaffold detect`, `scaffold update` and the copier hook, so they say it the same way.
    """
    stream = stream or sys.stderr
    if report.written:
        verb = "created" if report.created else "updated"
        status("ok", f"{verb} {report.env_file.name} (mode 0600)", stream=stream)
    for change in report.changes:
        say(f"      {change.describe()}", stream=stream)
    if report.backup:
        say(f"      previous file saved in {report.backup}", stream=stream)
    for note in report.notes:
        status("info", note, stream=stream)
    for problem in report.problems:
        status("warn", f".env line {problem.line}: {problem.message}", stream=stream)
    for message in report.errors:
        status("fail", message, stream=stream)
    if report.docker_error is not None:
        err = report.docker_error
        status(
            "warn",
            f"{err.message}. The proxy subnet was chosen without Docker and is marked unverified in .env. "
            f"fix: {err.hint}; then run `scaffold detect` in this folder.",
            stream=stream,
        )
