"""Running a piece of test code as an unprivileged user, to see what a normal user would see."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

NOBODY = 65534


def as_unprivileged_user(action: Callable[[], object]) -> tuple[str, str]:
    """Run `action` as `nobody` when root (else as we are); returns (exception class name, message)."""
    if os.geteuid() != 0:
        try:
            action()
        except Exception as exc:
            return type(exc).__name__, str(exc)
        return "", ""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges, run, report through the pipe, never return into pytest
        outcome = ("", "")
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
        except BaseException as exc:
            outcome = (type(exc).__name__, str(exc))
        finally:
            os.write(write_end, json.dumps(outcome).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    name, message = json.loads(data)
    return name, message
