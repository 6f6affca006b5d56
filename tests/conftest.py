"""Shared test set-up.

Tests marked `docker` need a reachable Docker daemon. Locally they are skipped when there
is none; with `CI=true` a missing daemon FAILS them, because CI promises a daemon and a
skipped test proves nothing.
"""

from __future__ import annotations

import functools
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@functools.cache
def _docker_problem() -> str | None:
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


def compose_available() -> bool:
    import shutil
    import subprocess

    return shutil.which("docker") is not None and (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = _docker_problem()
    require(problem is None, f"no Docker daemon is reachable ({problem})")


@pytest.fixture(scope="session")
def docker_client():
    """A Docker SDK client for the daemon the tests run against."""
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def standin_images(docker_client):
    """The stand-in images (built once, then reused by content hash)."""
    from standins.images import ensure_standin_images

    return ensure_standin_images(docker_client)


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user (`nobody`) can enter; pytest's tmp_path is private."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="scaffold-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
