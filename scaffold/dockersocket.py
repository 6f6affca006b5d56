"""A standard-library client for the local Docker socket, for the copier task's few reads.

Importing the Docker SDK (requests, urllib3, charset_normalizer) cost ~60 ms, about 40% of the
copier task that runs after every `copier copy`. When the daemon the docker CLI would use is the
local unix socket, the three GETs `scaffold detect` needs (ping, networks, one network; volumes)
go over that socket as plain HTTP/1.0 requests instead. Any other endpoint (tcp, TLS, ssh, a CLI
context) keeps the SDK: `scaffold.dockerapi.connect` decides.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

#: Where the docker CLI and the SDK look when neither DOCKER_HOST nor a context says otherwise.
DEFAULT_SOCKET = "/var/run/docker.sock"
#: The most an answer may be: a daemon's network list is a few hundred kB at worst.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class DockerSocketError(OSError):
    """The daemon answered, but not with what was asked for (an HTTP error or not HTTP at all)."""


def current_context_name(environ: Mapping[str, str]) -> str:
    """The docker CLI context in use: DOCKER_CONTEXT, else `currentContext` of the CLI config."""
    if environ.get("DOCKER_CONTEXT"):
        return environ["DOCKER_CONTEXT"]
    config_dir = Path(environ["DOCKER_CONFIG"]) if environ.get("DOCKER_CONFIG") else Path.home() / ".docker"
    try:
        config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "default"  # as the SDK does: an unreadable config means the default socket
    name = config.get("currentContext") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else "default"


def local_socket_path(environ: Mapping[str, str] | None = None) -> str | None:
    """The unix socket the docker CLI would use, or None when it would use anything else."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    return DEFAULT_SOCKET if current_context_name(env) == "default" else None


class SocketClient:
    """The read calls of the SDK's `APIClient` that `DockerAPI` makes, over a unix socket.

    Each call is one HTTP/1.0 request on a new connection, so the daemon ends the answer by
    closing it: no keep-alive or chunked decoding to get wrong. Unversioned paths get the
    daemon's own API version, whose network and volume fields scaffold reads have been stable
    since API 1.21.
    """

    def __init__(self, path: str, *, timeout: float = 10) -> None:
        self.path = path
        self.timeout = timeout

    @property
    def api(self) -> SocketClient:
        """`DockerAPI` asks `client.api.networks()`, as with the SDK's `DockerClient`."""
        return self

    def get(self, path: str, query: Mapping[str, str] | None = None) -> bytes:
        """The body of a 200 answer to `GET path?query`; OSError for anything else."""
        target = f"{path}?{urlencode(query)}" if query else path
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(f"GET {target} HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii"))
            answer = bytearray()
            while chunk := sock.recv(65536):
                answer += chunk
                if len(answer) > MAX_ANSWER_BYTES:
                    raise DockerSocketError(f"GET {path}: the answer exceeds {MAX_ANSWER_BYTES} bytes")
        head, separator, body = bytes(answer).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if not separator or len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise DockerSocketError(f"GET {path}: {self.path} did not answer in HTTP (not Docker's socket?)")
        status = status_line[1]
        if status != "200":
            raise DockerSocketError(f"GET {path}: {status} {_error_message(body)}".rstrip())
        return body

    def get_json(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        try:
            return json.loads(self.get(path, query))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
            raise DockerSocketError(f"GET {path}: the answer is not JSON ({exc})") from None

    def ping(self) -> bool:
        self.get("/_ping")
        return True

    def networks(self) -> list[dict[str, Any]]:
        return self.get_json("/networks")

    def inspect_network(self, net_id: str) -> dict[str, Any]:
        return self.get_json(f"/networks/{quote(net_id, safe='')}")

    def volumes(self, filters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Like the SDK: each filter value becomes a one-item list of the JSON `filters` parameter."""
        query = {"filters": json.dumps({key: [value] for key, value in filters.items()})} if filters else None
        return self.get_json("/volumes", query)

    def close(self) -> None:
        """Nothing stays open between calls."""


def _error_message(body: bytes) -> str:
    """The daemon's `{"message": ...}`, or the start of whatever else it sent."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    return str(data.get("message", text[:200])) if isinstance(data, dict) else text[:200]
