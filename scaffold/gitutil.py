"""The few git operations scaffold needs, run through the git CLI (copier needs it anyway)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scaffold.errors import ProjectError

#: Used only when the user has no git identity, so that the first commit still works.
FALLBACK_IDENTITY = ("-c", "user.name=scaffold", "-c", "user.email=scaffold@localhost")


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise ProjectError("git is not installed", hint="install git (e.g. `sudo apt install git`)")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise ProjectError(f"`git {' '.join(args)}` failed in {cwd}: {result.stderr.strip()}")
    return result


def is_repo_root(path: Path) -> bool:
    result = git(path, "rev-parse", "--show-toplevel", check=False)
    return result.returncode == 0 and Path(result.stdout.strip()).resolve() == path.resolve()


def dirty_paths(path: Path) -> list[str]:
    """Modified, staged and untracked (not ignored) paths, as `git status` shows them."""
    out = git(path, "status", "--porcelain", "--untracked-files=all").stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def has_identity(path: Path) -> bool:
    return bool(git(path, "config", "user.email", check=False).stdout.strip())


def commit_all(path: Path, message: str) -> None:
    git(path, "add", "-A")
    identity = () if has_identity(path) else FALLBACK_IDENTITY
    git(path, *identity, "commit", "-q", "--no-verify", "-m", message)


def tracked_files(path: Path) -> list[str]:
    return [line for line in git(path, "ls-files", "-z").stdout.split("\0") if line]


def conflicted_files(path: Path) -> list[str]:
    return [line for line in git(path, "diff", "--name-only", "--diff-filter=U").stdout.splitlines() if line]
