"""A single-node Docker Swarm for one test module, and a generated `target: swarm` project on it.

The Docker daemon is shared: a swarm changes it for everyone (overlay networks, docker_gwbridge, the
ingress network), so the swarm exists only while the module runs, is always left in `finally` (also on
failure or Ctrl-C), and is never joined or left when the daemon already belongs to one. The address pool
10.231.0.0/16 keeps the swarm's networks away from other tests' ranges. A file lock keeps two swarm
tests on this machine from overlapping.

The stack is deployed with `scaffold deploy` unchanged; a test-only stack file (stack.test.yaml, merged
with `-f`) swaps the nginx, certbot and PostgreSQL images for the stand-ins, adds pebble and an
attachable `client` overlay for test clients. authentik's image comes from .env (AUTHENTIK_IMAGE and
AUTHENTIK_TAG), the way a user would pin one, so a rolling update is a change of AUTHENTIK_TAG.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.stack import (
    REPO_ROOT,
    docker,
    docker_api,
    free_port,
    generate,
    standin_services,
    start_client_container,
    unique_name,
)

ADDRESS_POOL = "10.231.0.0/16"
OVERRIDE = "stack.test.yaml"
LOCK = Path(tempfile.gettempdir()) / "scaffold-swarm-test.lock"


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


@contextlib.contextmanager
def single_node_swarm() -> Iterator[str]:
    """`docker swarm init` for the duration of the block; yields the node id. Always left afterwards."""
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AssertionError(f"another swarm test holds {LOCK}; run swarm tests one at a time") from None
        state = swarm_state()
        if state != "inactive":
            raise AssertionError(
                f"the Docker daemon is already a swarm member (state: {state}); this test creates and "
                "leaves its own single-node swarm and will not touch someone else's. Run it on a daemon "
                "outside any swarm (`docker swarm leave` only if that swarm is yours)"
            )
        had_gwbridge = docker("network", "inspect", "docker_gwbridge", check=False).returncode == 0
        try:
            docker(
                "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377",
                "--default-addr-pool", ADDRESS_POOL,
            )  # fmt: skip
            yield docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        finally:
            docker("swarm", "leave", "--force", check=False, timeout=120)
            if not had_gwbridge:
                docker("network", "rm", "docker_gwbridge", check=False)


def write_override(project_dir: Path, images: Any) -> Path:
    """stack.test.yaml: stand-in images, pebble, the test CA, a `client` overlay. Nothing else.
    authentik's image comes from .env (see the module's docstring)."""
    services = standin_services(project_dir, images)
    # No virtual IPs (the stack's own services have none either): this kernel may lack IPVS.
    services["pebble"]["deploy"] = {"endpoint_mode": "dnsrr"}
    override = {"services": services, "networks": {"client": {"driver": "overlay", "attachable": True}}}
    path = project_dir / OVERRIDE
    path.write_text(json.dumps(override, indent=2))
    return path


def set_env(project_dir: Path, **values: str) -> None:
    """Set keys in .env the way a user edits it (scaffold keeps a value the user set)."""
    env = project_dir / ".env"
    lines = [line for line in env.read_text().splitlines() if line.split("=", 1)[0] not in values]
    lines += [f"{key}={value}" for key, value in values.items()]
    env.write_text("\n".join(lines) + "\n")


@dataclass
class SwarmStack:
    dir: Path
    project: str
    images: Any
    http_port: int
    https_port: int
    client_container: str | None = None
    extra_tags: list[str] = field(default_factory=list)

    def scaffold(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-m", "scaffold", *args], cwd=self.dir, env=env,
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"scaffold {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.scaffold("deploy", "--resolve-image", "never", "--file", OVERRIDE, str(self.dir))

    def service(self, name: str) -> str:
        return f"{self.project}_{name}"

    # Asked through the API (tests/helpers/stack.py `docker_api`): `converged` is polled every two
    # seconds, and through the CLI one poll started about ten `docker` processes.

    def inspect_service(self, name: str) -> dict[str, Any]:
        return docker_api().inspect_service(self.service(name))

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """The service's tasks that Swarm wants running, as `docker inspect` shows them."""
        return docker_api().tasks(filters={"service": self.service(name), "desired-state": "running"})

    def containers(self, name: str) -> list[str]:
        """Ids of the running containers of a service (this node is the whole swarm)."""
        label = f"com.docker.swarm.service.name={self.service(name)}"
        return [row["Id"] for row in docker_api().containers(filters={"label": label})]

    def container_health(self, container: str) -> str:
        state = docker_api().inspect_container(container)["State"]
        return (state.get("Health") or {}).get("Status") or state.get("Status", "")

    def converged(self, name: str, replicas: int) -> bool:
        """`replicas` tasks running with healthy containers, and no update under way."""
        running = [t for t in self.tasks(name) if t["Status"]["State"] == "running"]
        containers = self.containers(name)
        update = (self.inspect_service(name).get("UpdateStatus") or {}).get("State", "completed")
        return (
            len(running) == replicas
            and len(containers) == replicas
            and all(self.container_health(c) == "healthy" for c in containers)
            and update in ("completed", "rollback_completed", "")
        )

    def logs(self, name: str) -> str:
        result = docker("service", "logs", "--raw", "--no-trunc", self.service(name), check=False)
        return result.stdout + result.stderr

    def start_client(self) -> str:
        """A client container on the attachable `client` overlay (outside every trusted subnet)."""
        if self.client_container is None:
            self.client_container = start_client_container(
                f"{self.project}-testclient", self.service("client"), self.images.client
            )
        return self.client_container

    def client(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.start_client(), *cmd, check=check, timeout=timeout)

    def client_script(
        self, script: str, *args: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", "-i", self.start_client(), "python3", "-", *args],
            input=script, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def client_address(self) -> str:
        data = docker_api().inspect_container(self.start_client())
        return data["NetworkSettings"]["Networks"][self.service("client")]["IPAddress"]

    def nginx_address(self, network: str = "client") -> str:
        data = docker_api().inspect_container(self.containers("nginx")[0])
        return data["NetworkSettings"]["Networks"][self.service(network)]["IPAddress"]

    def env(self) -> dict[str, str | None]:
        from dotenv import dotenv_values

        return dict(dotenv_values(self.dir / ".env", interpolate=False))

    def remove(self) -> None:
        """Remove the stack and everything it left on this node (volumes survive `docker stack rm`)."""
        if self.client_container:
            docker("rm", "-f", self.client_container, check=False)
        docker("stack", "rm", self.project, check=False)
        deadline = time.monotonic() + 90
        label = f"label=com.docker.stack.namespace={self.project}"
        while time.monotonic() < deadline and docker("ps", "-aq", "--filter", label).stdout.strip():
            time.sleep(1)
        for container in docker("ps", "-aq", "--filter", label).stdout.split():
            docker("rm", "-f", container, check=False)
        for volume in docker("volume", "ls", "-q", "--filter", label).stdout.split():
            docker("volume", "rm", "-f", volume, check=False)
        for tag in self.extra_tags:
            docker("rmi", tag, check=False)


@contextlib.contextmanager
def swarm_stack(tmp_path: Path, images: Any) -> Iterator[SwarmStack]:
    """A generated `target: swarm` project on a fresh single-node swarm, removed afterwards."""
    project = unique_name("sw")
    http_port, https_port = free_port(), free_port()
    answers = {
        "project_name": project,
        "target": "swarm",
        "acme_server": "https://pebble:14000/dir",
        "http_port": http_port,
        "https_port": https_port,
    }
    with single_node_swarm() as node:
        docker(
            "node",
            "update",
            "--label-add",
            "authentik.state=true",
            "--label-add",
            "authentik.edge=true",
            node,
        )
        project_dir = generate(tmp_path / project, answers)
        write_override(project_dir, images)
        repository, _, tag = images.authentik.rpartition(":")
        set_env(project_dir, AUTHENTIK_IMAGE=repository, AUTHENTIK_TAG=tag)
        stack = SwarmStack(project_dir, project, images, http_port, https_port)
        try:
            yield stack
        finally:
            stack.remove()
