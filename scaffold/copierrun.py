"""copier's API, with every way it can fail turned into scaffold's error tree.

copier raises its own errors, plain ValueErrors for answers its validators refuse, plumbum's
ProcessExecutionError when one of its git steps fails, and OSError when a file cannot be written.
`scaffold new` and `scaffold update` call copier only through here, so each of those ends as one
message with a fix, never a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scaffold.errors import ProjectError, TemplateError, UsageError
from scaffold.gitutil import last_line

_VALIDATION_PREFIX = "Validation error for question "


@contextmanager
def copier_errors(action: str) -> Iterator[None]:
    """Translate what copier raises during `action` ("copier copy", "copier update")."""
    from copier.errors import CopierError
    from plumbum.commands.processes import ProcessExecutionError

    try:
        yield
    except CopierError as exc:  # before ValueError: some of copier's own errors are ValueErrors too
        raise TemplateError(f"{action} failed: {exc}") from None
    except ValueError as exc:  # copier raises the question validators' messages as ValueError
        if str(exc).startswith("Unknown revision"):
            raise UsageError(
                f"{action} failed: the template has no version {str(exc).split(':', 1)[1].strip()}",
                hint="give a tag the template has (`git tag --list` in its clone)",
            ) from None
        raise UsageError(
            f"invalid answer {str(exc).replace(_VALIDATION_PREFIX, '')}",
            hint="correct that --data value and run the command again",
        ) from None
    except ProcessExecutionError as exc:
        argv = [str(part) for part in exc.argv[:3]]
        command = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else "git"
        remote = any(word in command for word in ("ls-remote", "clone", "fetch"))
        hint = (
            "check the network and the template's URL"
            if remote
            else "check `git status` in the project; another git or scaffold run may have been working on it"
        )
        message = f"{action} failed: `{command}` said: {last_line(str(exc.stderr))}"
        raise TemplateError(message, hint=hint) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        hint = (
            "the filesystem is mounted read-only; remount it read-write and run again"
            if exc.errno == errno.EROFS
            else "run scaffold as the user who owns the project, with write access to every file in it"
        )
        message = f"{action} failed: cannot write{where}: {exc.strerror or exc}"
        raise ProjectError(message, hint=hint) from None


def run_copy(source: str, dest: Path, data: dict[str, str], **options: Any) -> None:
    import copier

    with copier_errors("copier copy"):
        copier.run_copy(source, str(dest), data=data, unsafe=True, **options)


def run_update(project: Path, data: dict[str, str], **options: Any) -> None:
    import copier

    with copier_errors("copier update"):
        copier.run_update(str(project), data=data, unsafe=True, overwrite=True, **options)
