"""One error tree for the whole package; `cli` maps it onto exit codes and messages.

Each error carries what went wrong (`message`) and how to fix it (`hint`), so that the one
place that prints errors can always say both. Constructors print nothing.
"""

from __future__ import annotations

# Exit codes, documented in README.md ("Exit codes") and in every command's --help (EXIT_CODES).
EXIT_OK = 0
EXIT_FAILED = 1  # the operation failed or a check found a problem; the user's files are as they were
EXIT_USAGE = 2  # bad command line, or the command could not run at all
EXIT_NEEDS_ATTENTION = 3  # `scaffold update` applied the update but left conflicts or problems (listed)
EXIT_INTERRUPTED = 130

#: Every exit code with its meaning, in the words `--help` shows.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "failed, files left (or put back) as they were",
    EXIT_USAGE: "usage error or could not run",
    EXIT_NEEDS_ATTENTION: "update applied with conflicts or problems to resolve",
    EXIT_INTERRUPTED: "interrupted",
}


class ScaffoldError(Exception):
    """Root of every error the CLI reports as a message instead of a traceback."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UsageError(ScaffoldError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


class EnvFileError(ScaffoldError):
    """`.env` cannot be read or written safely (a directory, read-only, locked...)."""


class DockerUnavailable(ScaffoldError):
    """The Docker daemon cannot be reached or denies access."""


class SubnetError(ScaffoldError):
    """A proxy subnet is invalid, public, or overlaps something."""


class ProjectError(ScaffoldError):
    """The generated project is not in a state an operation needs (preflight failures)."""


class TemplateError(ScaffoldError):
    """The template source cannot be reached or read, or copier failed on it."""


class GitError(ScaffoldError):
    """git is missing, timed out, or refused an operation scaffold needs."""
