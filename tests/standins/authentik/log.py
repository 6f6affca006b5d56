"""JSON log lines on stdout, like authentik's structured logs.

Access-log lines are buffered and flushed a few times a second: one write per request would cost more
than answering it, and the stand-in is used in benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def log(level: str, event: str, **fields: object) -> None:
    """One immediate log line (start-up, errors)."""
    record = {"event": event, "level": level, "logger": "authentik.standin", "timestamp": time.time()}
    record.update(fields)
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


class AccessLog:
    """Batched request log for the event loop."""

    def __init__(self, interval: float = 0.25) -> None:
        self._lines: list[str] = []
        self._interval = interval
        self._scheduled = False

    def request(self, method: str, path: str, status: int, client_ip: str, scheme: str, host: str) -> None:
        self._lines.append(
            json.dumps(
                {
                    "event": path,
                    "level": "info",
                    "logger": "authentik.asgi",
                    "method": method,
                    "status": status,
                    "remote": client_ip,
                    "scheme": scheme,
                    "host": host,
                }
            )
        )
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._lines:
            data = "\n".join(self._lines) + "\n"
            self._lines.clear()
            sys.stdout.write(data)
            sys.stdout.flush()
