"""`docker compose config`: does Compose accept the project's compose.yaml and .env?

`scaffold update` runs it after an update and doctor as a check; both read the answer from here,
so they agree on what "Compose is missing" and "Compose rejects the project" look like.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: What the docker CLI says when the Compose v2 plugin is not installed.
_NO_PLUGIN = re.compile(r"is not a docker command|unknown command")


@dataclass(frozen=True)
class ConfigCheck:
    """`state` is one of: ok, rejected (message: Compose's error), no-docker, no-compose, timeout."""

    state: str
    message: str = ""


def check_config(project: Path, *, timeout: float) -> ConfigCheck:
    if shutil.which("docker") is None:
        return ConfigCheck("no-docker")
    try:
        result = subprocess.run(
            ["docker", "compose", "config", "--quiet"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ConfigCheck("timeout", f"`docker compose config` did not answer within {timeout:g}s")
    except OSError as exc:
        return ConfigCheck("no-docker", str(exc))
    message = (result.stderr or result.stdout).strip()
    if result.returncode == 0:
        return ConfigCheck("ok")
    if _NO_PLUGIN.search(message):
        return ConfigCheck("no-compose", message)
    return ConfigCheck("rejected", message or f"exit code {result.returncode}")
