"""Printing for humans: colour only on a terminal, never when NO_COLOR is set.

Every message goes through here so that status words look the same everywhere and no
command has to think about terminals.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

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
