"""Waiting for a live stack: one polling helper for every test that waits on containers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = 90,
    interval: float = 0.5,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    An error raised by `condition` counts as "not yet" (a container still starting, a 502 page,
    a file not written yet). On timeout the failure names `what`, the last value or error, and
    whatever `context()` adds (container logs, say), so a slow start and a real fault read apart.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except Exception as error:
            last = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    extra = f"\n{context()}" if context else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r}){extra}")
