"""Generate a project from the working tree and run it on the real Docker daemon.

The generated compose.yaml runs unchanged; a test-only override file (compose.test.yaml)
swaps every `image:` for a stand-in built from Debian packages, adds pebble (the ACME test
CA) on the `outbound` network with nginx reachable there under the stack's domain, trusts
pebble's CA in certbot, and adds a `client` network of its own for test clients. Nothing the
user's stack relies on is changed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "sso.example.test"
PEBBLE_DIRECTORY = "https://pebble:14000/dir"
OVERRIDE = "compose.test.yaml"
#: The labels Compose puts on a service's containers: its service name and its number when scaled.
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
#: The health in `docker ps` STATUS: "Up 5 seconds (healthy)", "Up 1 second (health: starting)".
_HEALTH_IN_STATUS = re.compile(r"\((?:health: )?(healthy|unhealthy|starting)\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_name(prefix: str = "sc") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def generate(
    dest: Path, data: dict[str, Any], *, template: Path = REPO_ROOT, skip_tasks: bool = False
) -> Path:
    """`copier copy` of the working tree (dirty changes included) with the given answers."""
    import copier

    answers = {"domain": DOMAIN, "acme_email": "admin@example.test", **data}
    copier.run_copy(
        str(template),
        str(dest),
        data=answers,
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        quiet=True,
        skip_tasks=skip_tasks,
    )
    return dest


def start_client_container(name: str, network: str, image: str, *options: str) -> str:
    """A long-running (sleeping) client container on one network, for tests to `docker exec` in."""
    docker(
        "run", "-d", "--name", name, "--network", network, *options,
        "--entrypoint", "sleep", image, "infinity",
    )  # fmt: skip
    return name


def standin_services(project_dir: Path, images: Any) -> dict[str, Any]:
    """The test-file services both targets share: stand-in images for PostgreSQL, nginx (also on a
    `client` network, and the domain's name on `outbound`) and certbot (trusting pebble's CA, which
    is written beside the project), and pebble itself. authentik's images are the caller's."""
    (project_dir / "pebble-ca.pem").write_text(images.pebble_ca_pem)
    return {
        "postgresql": {"image": images.postgres},
        "nginx": {
            "image": images.nginx,
            "networks": {"outbound": {"aliases": [DOMAIN]}, "client": {}},
        },
        "certbot": {
            "image": images.certbot,
            "environment": {"REQUESTS_CA_BUNDLE": "/opt/test-ca/pebble-ca.pem"},
            "volumes": ["./pebble-ca.pem:/opt/test-ca/pebble-ca.pem:ro"],
        },
        "pebble": {"image": images.pebble, "networks": ["outbound"]},
    }


def write_override(project_dir: Path, images: Any) -> Path:
    """compose.test.yaml: stand-in images, pebble, the test CA, a client network. Nothing else."""
    services = standin_services(project_dir, images)
    services["server"] = {"image": images.authentik}
    services["worker"] = {"image": images.authentik}
    path = project_dir / OVERRIDE
    path.write_text(json.dumps({"services": services, "networks": {"client": {}}}, indent=2))  # JSON is YAML
    return path


@dataclass
class Stack:
    """A generated project and its Compose stack on the real daemon."""

    dir: Path
    project: str
    images: Any
    http_port: int
    https_port: int
    client_container: str | None = None
    _started: bool = field(default=False, repr=False)

    @property
    def public_host(self) -> str:
        """What a browser sends as Host: the domain, with the port when it is not 443."""
        return DOMAIN if self.https_port == 443 else f"{DOMAIN}:{self.https_port}"

    def compose(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", "-f", "compose.yaml", "-f", OVERRIDE, *args]
        result = subprocess.run(
            cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def up(self, *services: str) -> None:
        self._started = True
        self.compose("up", "-d", *services)

    def container_id(self, service: str) -> str:
        """The running container of `service` (the first by number when scaled), as `docker compose
        ps -q` finds it: by Compose's labels, through the API (no Compose start, ~0.15 s of CPU)."""
        running = docker_api().containers(filters={"label": [*self._labels(), f"{SERVICE_LABEL}={service}"]})
        if not running:
            raise AssertionError(f"no container for service {service}")
        return min(running, key=lambda row: int(row["Labels"].get(NUMBER_LABEL, "0")))["Id"]

    def _labels(self) -> list[str]:
        """The labels Compose puts on this project's service containers (not `run` one-offs)."""
        return [f"com.docker.compose.project={self.project}", "com.docker.compose.oneoff=False"]

    def inspect(self, service: str) -> dict[str, Any]:
        return docker_api().inspect_container(self.container_id(service))

    def health(self, service: str) -> str:
        state = self.inspect(service)["State"]
        return (state.get("Health") or {}).get("Status") or state.get("Status", "")

    def health_of_all(self) -> dict[str, str]:
        """Every service's health (or state, without a healthcheck), as `docker compose ps` shows it.

        Asked through the API on Compose's labels (what `docker ps` lists): the same answer without
        starting a CLI, which matters when every running stack asks once a second.
        """
        every = {}
        for row in docker_api().containers(all=True, filters={"label": self._labels()}):
            service = row["Labels"].get(SERVICE_LABEL, "")
            health = _HEALTH_IN_STATUS.search(row["Status"])
            if service:
                every[service] = health.group(1) if health else row["State"]
        return every

    def wait_healthy(self, services: tuple[str, ...], timeout: float = 240) -> None:
        """Until Docker calls every one of `services` healthy: one Compose call per second (a call
        per service, every 2 s, took a few seconds a round on a loaded machine)."""
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        while time.monotonic() < deadline:
            every = self.health_of_all()
            status = {s: every.get(s, "absent") for s in services}
            if all(v == "healthy" for v in status.values()):
                return
            time.sleep(1)
        raise AssertionError(
            f"not healthy after {timeout}s: {status}\n{self.compose('logs', '--tail', '40').stdout}"
        )

    def exec(self, service: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker compose exec -T service cmd`, as `docker exec` in that container (a third of the CPU)."""
        return docker("exec", self.container_id(service), *cmd, check=check)

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout

    def network_name(self, network: str) -> str:
        return f"{self.project}_{network}"

    def start_client(self) -> str:
        """A long-running client container on the `client` network only (outside the trusted subnet)."""
        if self.client_container is None:
            self.client_container = start_client_container(
                f"{self.project}-testclient", self.network_name("client"), self.images.client,
                "--label", f"com.docker.compose.project={self.project}",
            )  # fmt: skip
        return self.client_container

    def client(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command in the client container."""
        return docker("exec", self.start_client(), *cmd, check=check, timeout=timeout)

    def client_address(self) -> str:
        data = docker_api().inspect_container(self.start_client())
        return data["NetworkSettings"]["Networks"][self.network_name("client")]["IPAddress"]

    def nginx_address(self, network: str = "client") -> str:
        return self.inspect("nginx")["NetworkSettings"]["Networks"][self.network_name(network)]["IPAddress"]

    def env(self) -> dict[str, str | None]:
        from dotenv import dotenv_values

        return dict(dotenv_values(self.dir / ".env", interpolate=False))

    def down(self) -> None:
        """Remove the stack with its volumes. Killed, not stopped: nothing of it is kept, and a graceful
        stop waits for each container in dependency order (PostgreSQL's waits for its clients)."""
        if self.client_container:
            docker("rm", "-f", self.client_container, check=False)
            self.client_container = None
        self.compose("down", "-v", "--remove-orphans", "--timeout", "0", check=False)


@functools.cache
def docker_api() -> Any:
    """One Docker API client per test process, for the questions tests ask most (containers, their
    state, inspect): a `docker` CLI start costs ~40 ms of CPU, an API call over the socket ~1 ms."""
    import docker as docker_sdk

    return docker_sdk.from_env(timeout=300).api


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
    return result


@contextlib.contextmanager
def running_stack(
    tmp_path: Path, images: Any, data: dict[str, Any] | None = None, *, template: Path = REPO_ROOT
) -> Iterator[Stack]:
    """A freshly generated project, ready to `up` (not started); torn down afterwards.

    `template`: a template repository other than this checkout (e.g. a tagged copy, for updates).
    """
    project = unique_name()
    http_port, https_port = free_port(), free_port()
    answers = {
        "project_name": project,
        "acme_server": PEBBLE_DIRECTORY,
        "http_port": http_port,
        "https_port": https_port,
        **(data or {}),
    }
    project_dir = generate(tmp_path / project, answers, template=template)
    write_override(project_dir, images)
    stack = Stack(project_dir, project, images, http_port, https_port)
    try:
        yield stack
    finally:
        stack.down()
