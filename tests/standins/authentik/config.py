"""The parts of authentik's configuration the stand-in honours, read the way authentik reads them.

authentik accepts `file:///path` and `env://NAME` as values of any setting; a stack that passes secrets
that way must work with the stand-in too.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "AUTHENTIK_"


def setting(name: str, default: str = "", environ: dict[str, str] | None = None) -> str:
    """Value of AUTHENTIK_<name>, with file:// and env:// indirection resolved."""
    env = os.environ if environ is None else environ
    value = env.get(PREFIX + name, default)
    if value.startswith("file://"):
        return Path(value.removeprefix("file://")).read_text().strip()
    if value.startswith("env://"):
        return env.get(value.removeprefix("env://"), "")
    return value


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    name: str
    user: str
    password: str

    @classmethod
    def from_env(cls) -> Database:
        """authentik's defaults apply to unset values, as in the real server."""
        return cls(
            host=setting("POSTGRESQL__HOST", "localhost"),
            port=int(setting("POSTGRESQL__PORT", "5432") or 5432),
            name=setting("POSTGRESQL__NAME", "authentik"),
            user=setting("POSTGRESQL__USER", "authentik"),
            password=setting("POSTGRESQL__PASSWORD", ""),
        )


def listen_addresses(name: str, default: str) -> list[tuple[str, int]]:
    """Parse a comma-separated listen list such as `[::]:9000,0.0.0.0:9001` (authentik 2026.5+)."""
    result: list[tuple[str, int]] = []
    for item in setting(name, default).split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        result.append((host.strip("[]") or "::", int(port)))
    return result


def web_path() -> str:
    """AUTHENTIK_WEB__PATH: authentik serves everything under it; it needs a leading and trailing '/'."""
    path = setting("WEB__PATH", "/") or "/"
    if not (path.startswith("/") and path.endswith("/")):
        raise ValueError(f"AUTHENTIK_WEB__PATH={path!r} must start and end with '/'")
    return path


def state_dir() -> Path:
    """Where the mode file and heartbeat live: TMPDIR, which the official image sets to /dev/shm/."""
    return Path(tempfile.gettempdir())


def mode_file() -> Path:
    return state_dir() / "authentik-mode"


def heartbeat_file() -> Path:
    return state_dir() / "authentik-worker-heartbeat"
