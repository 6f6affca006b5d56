"""Shared test set-up.

Tests marked `docker` need a reachable Docker daemon. Locally they are skipped when there
is none; with `CI=true` a missing daemon FAILS them, because CI promises a daemon and a
skipped test proves nothing.
"""

from __future__ import annotations

import pytest

from tests.helpers.requirements import docker_problem, require


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = docker_problem()
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
    from tests.standins.images import ensure_standin_images

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
