"""Shared test set-up.

Tests marked `docker` need a reachable Docker daemon. Locally they are skipped when there
is none; with `CI=true` a missing daemon FAILS them, because CI promises a daemon and a
skipped test proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.daemonlock import daemon_access
from tests.helpers.requirements import docker_problem, require

#: Test modules (by path) with a `docker` test, and whether one of them needs the daemon alone.
_DAEMON_MODULES: dict[str, bool] = {}


#: The modules that take longest (about 20 s to 3 minutes each, run alone), longest first, so that
#: parallel workers end together instead of one of them starting a long module near the end (the
#: rest, each under 20 s, fill the gaps at the end).
LONGEST_FIRST = (
    "test_env_cycles.py",
    "e2e/test_e2e_backup.py",
    "e2e/test_e2e_stack.py",
    "e2e/test_e2e_proxies.py",
    "test_update.py",
    "test_detect.py",
    "e2e/test_e2e_forward_auth_browser.py",
    "e2e/test_doctor_stack.py",
    "test_update_proxies.py",
    "test_template.py",
    "e2e/test_e2e_forward_auth.py",
    "test_standins.py",
    "e2e/test_e2e_pgmajor.py",
    "test_envfile.py",
    "e2e/test_e2e_variants.py",
    "e2e/test_e2e_dns01.py",
    "test_update_robustness.py",
    "test_apps.py",
    "e2e/test_e2e_browser.py",
    "e2e/test_update_backup.py",
    "e2e/test_e2e_public_url.py",
    "test_update_pgmajor.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile scaffold/ and the test helpers once, before the workers start. Where
    PYTHONDONTWRITEBYTECODE is set (this machine and CI), each of the suite's `scaffold` processes
    would otherwise compile the package again (~50 ms of CPU each). `__pycache__` is gitignored, so
    the template repositories the tests make never carry it."""
    if hasattr(config, "workerinput"):
        return
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in (root / "scaffold", root / "tests" / "helpers"):
        compileall.compile_dir(package, quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("docker") is not None:
            module = str(item.path)
            exclusive = item.get_closest_marker("daemon_exclusive") is not None
            _DAEMON_MODULES[module] = _DAEMON_MODULES.get(module, False) or exclusive
    items.sort(key=_run_order)


def _run_order(item: pytest.Item) -> tuple[int, int]:
    """The module that needs the daemon alone first, while the others run the modules without Docker;
    then the Docker modules, longest first. The sort is stable: a module's tests keep their order.
    """
    exclusive = _DAEMON_MODULES.get(str(item.path))
    relative = item.path.relative_to(Path(__file__).parent).as_posix()
    rank = LONGEST_FIRST.index(relative) if relative in LONGEST_FIRST else len(LONGEST_FIRST)
    if exclusive:
        return (0, rank)
    return (1 if exclusive is None else 2, rank)


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
