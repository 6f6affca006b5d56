"""The few git operations scaffold needs, through one runner of the git CLI (copier needs git anyway).

Every git call goes through `git()`: no prompt for credentials (it would hang a non-interactive run),
a timeout (a dead remote must not hang an update or doctor), C locale (messages are matched on), and
a missing git binary or a timeout as a `GitError` with a fix, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from scaffold.errors import GitError

#: Used only when the user has no git identity, so that the first commit still works.
FALLBACK_IDENTITY = ("-c", "user.name=scaffold", "-c", "user.email=scaffold@localhost")
#: Seconds a local git command may take; network commands (clone, ls-remote) pass their own.
GIT_TIMEOUT = 60.0


def run_git(
    cwd: Path | None, args: list[str], *, timeout: float, stdin: bytes | None = None, text: bool = True
) -> subprocess.CompletedProcess[Any]:
    """`git ARGS` as scaffold runs it: never prompting, English messages, output captured.

    subprocess's errors (git missing, timeout) pass through for the caller to word.
    """
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # no passphrase prompt either
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=text,
        env=env,
        timeout=timeout,
        check=False,
    )


def git(
    cwd: Path | None, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` in `cwd`; with `check`, a non-zero exit is a GitError quoting git's message."""
    command = " ".join(("git", *args))
    try:
        result = run_git(cwd, list(args), timeout=timeout)
    except FileNotFoundError:
        if cwd is not None and not cwd.is_dir():
            raise GitError(f"{cwd} is not a folder", hint="check the path and run again") from None
        raise GitError("git is not installed", hint="install git (e.g. `sudo apt install git`)") from None
    except subprocess.TimeoutExpired:
        raise GitError(
            f"`{command}` did not finish within {timeout:g}s",
            hint="check the network (for a remote template) or what holds the repository, then retry",
        ) from None
    except OSError as exc:
        raise GitError(f"cannot run `{command}`: {exc.strerror or exc}") from None
    if check and result.returncode != 0:
        where = f" in {cwd}" if cwd is not None else ""
        raise GitError(f"`{command}` failed{where}: {last_line(result.stderr)}")
    return result


def last_line(text: str) -> str:
    """git's final message line (the one that says what went wrong)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def is_repo_root(path: Path) -> bool:
    result = git(path, "rev-parse", "--show-toplevel", check=False)
    return result.returncode == 0 and Path(result.stdout.strip()).resolve() == path.resolve()


def index_lock(path: Path) -> Path | None:
    """`.git/index.lock` when it exists: another git is running, or a crashed one left it behind."""
    result = git(path, "rev-parse", "--git-path", "index.lock", check=False)
    if result.returncode != 0:
        return None
    lock = path / result.stdout.strip()
    return lock if lock.exists() else None


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
