"""`docker compose` in a project folder, for the steps only Compose can do (start, stop, config).

The environment is passed through, so COMPOSE_FILE, COMPOSE_PROFILES and DOCKER_HOST apply as
they do when the user runs `docker compose` there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from scaffold.errors import ProjectError


def compose(project_dir: Path, *args: str, timeout: float = 900) -> str:
    """Run `docker compose ARGS` in `project_dir`; its stdout, or ProjectError with its message."""
    if shutil.which("docker") is None:
        raise ProjectError(
            "the docker command is not installed", hint="install Docker Engine with the Compose v2 plugin"
        )
    command = ["docker", "compose", *args]
    try:
        result = subprocess.run(
            command, cwd=project_dir, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ProjectError(
            f"`{' '.join(command)}` did not finish within {timeout:.0f} s",
            hint=f"look at `docker compose ps` and `docker compose logs` in {project_dir}",
        ) from None
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ProjectError(
            f"`{' '.join(command)}` failed in {project_dir}: " + " / ".join(message),
            hint=f"look at `docker compose ps` and `docker compose logs` in {project_dir}",
        )
    return result.stdout


def service_image(project_dir: Path, service: str) -> str:
    """The image a service runs, as Compose resolves it (variables from .env included)."""
    config = json.loads(compose(project_dir, "config", "--format", "json"))
    try:
        return str(config["services"][service]["image"])
    except KeyError:
        raise ProjectError(
            f"the compose file in {project_dir} has no service {service!r} with an image",
            hint="restore compose.yaml from git (`git checkout -- compose.yaml`)",
        ) from None
