"""Progress of long steps (a dump, an archive) on a terminal; silent when output is not a terminal.

One line per step, rewritten in place at most five times a second, so logs and cron mails stay
clean while a person watching sees that work goes on.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from scaffold.archive import describe_size


class Progress:
    """Counts bytes for one step and shows `label: 12.3 MB` while it runs."""

    def __init__(self, label: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.shown_at = 0.0
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.live and now - self.shown_at >= 0.2:
            self.shown_at = now
            self.stream.write(f"\r      {self.label}: {describe_size(self.done)}\033[K")
            self.stream.flush()

    def finish(self) -> None:
        if self.live and self.shown_at:
            self.stream.write("\r\033[K")
            self.stream.flush()
