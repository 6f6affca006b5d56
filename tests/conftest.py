"""Shared test set-up.

Tests marked `docker` need a reachable Docker daemon. Locally they are skipped when there
is none; with `CI=true` a missing daemon FAILS them, because CI promises a daemon and a
skipped test proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.daemonlock import daemon_access
from tests.helpers.requirements import docker_problem, require

#: Test modules (by path) with a `docker` test, and whether one of them needs the daemon alone.
_DAEMON_MODULES: dict[str, bool] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("docker") is not None:
            module = str(item.path)
            exclusive = item.get_closest_marker("daemon_exclusive") is not None
            _DAEMON_MODULES[module] = _DAEMON_MODULES.get(module, False) or exclusive


@pytest.fixture(scope="module", autouse=True)
def _daemon_share(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module with Docker tests holds the daemon shared, or alone when marked `daemon_exclusive`.

    Autouse at module scope, so the lock is taken before the module's own stacks start and
    released after they are gone (tests/helpers/daemonlock.py says why).
    """
    exclusive = _DAEMON_MODULES.get(str(request.path))
    if exclusive is None:
        yield
        return
    with daemon_access(exclusive):
        yield


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
