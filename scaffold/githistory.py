"""Find secret values anywhere in a git repository's history, without printing them or passing them to git.

A secret committed and then reverted is gone from the working tree but not from `git log -p`, and from
every clone and push. So doctor reads every file version reachable from any ref or reflog entry (each
distinct blob once, through `git cat-file --batch`) and looks for the values in memory. The values never
appear on a command line (where `ps` shows them) or in any output: a finding names the key, the file and
the commit. The search is bounded in bytes and time, and says when it stopped early.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from scaffold.gitutil import run_git

#: File versions larger than this are not searched (images, dumps); the same limit as for tracked files.
MAX_BLOB_BYTES = 5 * 1024 * 1024
#: Stop after reading this much history; enough for any configuration repository.
BYTE_BUDGET = 128 * 1024 * 1024
TIME_BUDGET = 15.0


@dataclass(frozen=True)
class Finding:
    key: str  # the `.env` key whose value was found
    path: str  # the file (as first seen in history) that held it
    commit: str | None  # an abbreviated commit that added that file version


@dataclass
class HistoryScan:
    findings: list[Finding] = field(default_factory=list)
    blobs: int = 0  # distinct file versions read
    complete: bool = True  # False when the byte or time budget ran out first


class GitUnavailable(Exception):
    """git is missing or refuses the repository; the message says why."""


def scan_history(
    root: Path,
    needles: dict[bytes, str],
    *,
    byte_budget: int = BYTE_BUDGET,
    time_budget: float = TIME_BUDGET,
) -> HistoryScan:
    """Every file version reachable from refs and reflogs that contains one of `needles` (value -> key)."""
    deadline = time.monotonic() + time_budget
    scan = HistoryScan()
    paths = _blobs_to_read(root, byte_budget, deadline, scan)
    listing = "".join(f"{name}\n" for name in paths).encode()
    contents = _run(root, ["cat-file", "--batch"], stdin=listing, deadline=deadline) if paths else b""
    if contents is None:
        scan.complete = False
        return scan
    hits: dict[str, set[str]] = {}
    for name, data in _batch_blobs(contents):
        scan.blobs += 1
        for needle, key in needles.items():
            if needle in data:
                hits.setdefault(name, set()).add(key)
    for name, keys in hits.items():
        commit = _adding_commit(root, name, deadline)
        scan.findings.extend(Finding(key, paths[name], commit) for key in sorted(keys))
    return scan


def _blobs_to_read(root: Path, byte_budget: int, deadline: float, scan: HistoryScan) -> dict[str, str]:
    """Distinct blobs of the whole history (name -> a path it had), within the byte budget."""
    objects = _run(root, ["rev-list", "--all", "--reflog", "--objects"], deadline=deadline)
    check = ["cat-file", "--batch-check=%(objecttype) %(objectname) %(objectsize) %(rest)"]
    sized = _run(root, check, stdin=objects, deadline=deadline) if objects is not None else None
    if sized is None:
        scan.complete = False
        return {}
    paths: dict[str, str] = {}
    for line in sized.decode("utf-8", "replace").splitlines():
        kind, name, size, path = [*line.split(" ", 3), ""][:4]
        if kind != "blob" or name in paths or int(size) > MAX_BLOB_BYTES:
            continue
        if int(size) > byte_budget:
            scan.complete = False
            continue
        byte_budget -= int(size)
        paths[name] = path
    return paths


def _batch_blobs(output: bytes):
    """(object name, content) pairs from `git cat-file --batch` output."""
    pos = 0
    while pos < len(output):
        header_end = output.index(b"\n", pos)
        name, _kind, size = output[pos:header_end].decode("ascii").split(" ")
        start = header_end + 1
        end = start + int(size)
        yield name, output[start:end]
        pos = end + 1  # each content is followed by a newline


def _adding_commit(root: Path, blob: str, deadline: float) -> str | None:
    """The oldest commit that added or removed this file version, abbreviated."""
    log = _run(root, ["log", "--all", "--reflog", "--format=%h", f"--find-object={blob}"], deadline=deadline)
    if not log:
        return None
    lines = log.decode("ascii", "replace").split()
    return lines[-1] if lines else None


def _run(root: Path, args: list[str], *, stdin: bytes | None = None, deadline: float) -> bytes | None:
    """git's stdout; None when the time budget ran out. Raises GitUnavailable when git refuses."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    try:
        result = run_git(root, args, timeout=remaining, stdin=stdin, text=False)
    except subprocess.TimeoutExpired:
        return None
    except OSError as exc:
        raise GitUnavailable(f"git cannot run: {exc.strerror or exc}") from None
    if result.returncode != 0:
        raise GitUnavailable(result.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed")
    return result.stdout
