"""`scaffold new` runs copier's task (the hook) in its own process when the template's code is its own.

copier runs the task as `python -P -m scaffold.hook` from its fresh clone of the template: a second
Python start plus a compile of the hook's modules (a fresh clone has no bytecode), about a tenth of
a whole copy. When `scaffold new` drives the copy and the clone's `scaffold/` package holds exactly
the files of the package running `scaffold new`, that task would run this very code. So the task's
`when:` (copier.yml) asks the template's Jinja extension (copier_extension.py, loaded from the
clone), which calls `claim_task` here; on a match copier skips the task and `scaffold new` runs
the hook right after the copy. Plain copier, another template version, a changed file or an older
scaffold: nothing claims the task and copier runs it as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class TaskOffer:
    """One copy run by `scaffold new`: `claimed` once the template's task was left to it."""

    claimed: bool = False


_current: TaskOffer | None = None


@contextmanager
def offer_task() -> Iterator[TaskOffer]:
    """While the block runs, copier's task may be claimed for this process (see `claim_task`)."""
    global _current
    offer = TaskOffer()
    _current = offer
    try:
        yield offer
    finally:
        _current = None


def claim_task(template_package: Path) -> bool:
    """True when a `scaffold new` copy is running in this process and `template_package` (the clone's
    `scaffold/`) holds the same files as this package: then that copy runs the hook itself."""
    offer = _current
    if offer is None or offer.claimed or not same_files(Path(template_package), PACKAGE_DIR):
        return False
    offer.claimed = True
    return True


def _package_files(root: Path) -> dict[str, Path]:
    """Every file of a package by relative path, bytecode caches left out."""
    return {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    }


def same_files(first: Path, second: Path) -> bool:
    """True when both folders hold the same file names with the same bytes."""
    if first.resolve() == second.resolve():
        return True
    ours, theirs = _package_files(first), _package_files(second)
    if ours.keys() != theirs.keys():
        return False
    try:
        return all(ours[name].read_bytes() == theirs[name].read_bytes() for name in ours)
    except OSError:
        return False
