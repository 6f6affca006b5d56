"""What a test needs from the machine, and what happens when it is missing.

Locally a missing tool skips the test; with `CI=true` it FAILS it, because CI promises the tool
and a skipped test proves nothing.
"""

from __future__ import annotations

import functools
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@functools.cache
def docker_problem() -> str | None:
    """Why the daemon cannot be used, or None when it answers a ping."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means "no usable daemon"
        return f"{type(exc).__name__}: {exc}"
    return None


def require(available: bool, what: str) -> None:
    """Skip locally when a tool the test needs is missing; in CI, where it is promised, fail."""
    if available:
        return
    if in_ci():
        pytest.fail(f"CI=true but {what}", pytrace=False)
    pytest.skip(what)


@functools.cache
def compose_available() -> bool:
    """Whether `docker compose` v2 runs (asked once per process: a Compose start costs ~0.15 s of CPU)."""
    import shutil
    import subprocess

    return shutil.which("docker") is not None and (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    )


#: Where the docker CLI looks for its plugins (after $DOCKER_CONFIG/cli-plugins or ~/.docker/cli-plugins).
_SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


@functools.cache
def compose_binary() -> list[str]:
    """The Compose v2 binary that `docker compose` runs, called directly: the same parser for half the
    CPU (the docker CLI starts it twice, once for its metadata). `docker compose` when not found."""
    from pathlib import Path

    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    for folder in (config / "cli-plugins", *map(Path, _SYSTEM_PLUGIN_DIRS)):
        plugin = folder / "docker-compose"
        if plugin.is_file() and os.access(plugin, os.X_OK):
            return [str(plugin)]
    return ["docker", "compose"]
