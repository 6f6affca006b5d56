"""One Docker daemon for parallel test workers, held alone by a module that changes it for everyone.

The suite runs in several pytest-xdist workers against one daemon. Most Docker tests only add
containers and networks of their own, so they can overlap. A module marked `daemon_exclusive`
(the Swarm end-to-end test: `docker swarm init` adds ingress, docker_gwbridge and firewall rules,
and `swarm leave` takes them away) must not overlap with any other stack's life.

So every module with a `docker` test holds a shared lock for its whole run, its module-scoped
stacks included, and a `daemon_exclusive` module holds it alone. A second lock, the turnstile,
lets a waiting exclusive module in before new shared holders, so it is not starved by workers that
keep starting modules. Both are `flock`s: the kernel drops them when a worker dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "scaffold-tests-daemon.lock"
TURNSTILE = Path(tempfile.gettempdir()) / "scaffold-tests-daemon.turnstile"


@contextlib.contextmanager
def daemon_access(
    exclusive: bool, lock_file: Path = LOCK, turnstile_file: Path = TURNSTILE
) -> Iterator[None]:
    """Hold the daemon shared with other modules (False) or alone (True) for the block."""
    with open(turnstile_file, "a") as turnstile, open(lock_file, "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
