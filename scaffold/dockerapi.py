"""Read-only access to the Docker daemon, with typed results and clear errors.

scaffold never creates or changes a Docker object: it runs as a copier task three times per
update, and Compose owns the stack's objects. The `docker` SDK is imported only here, inside
`connect`, so the CLI starts fast.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from scaffold.errors import DockerUnavailable
from scaffold.subnets import IPAddress, Network, Occupied

if TYPE_CHECKING:
    import docker

    from scaffold.dockersocket import SocketClient

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_NETWORK_LABEL = "com.docker.compose.network"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_VOLUME_LABEL = "com.docker.compose.volume"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


@dataclass(frozen=True)
class Attachment:
    """One container's addresses on a network."""

    container: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None


@dataclass(frozen=True)
class DockerNetwork:
    id: str
    name: str
    subnets: tuple[Network, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Gateways named in the IPAM config. Docker fills them in only when they were given (20.10)
    #: or always (newer engines); `scaffold.subnets.gateway_of` supplies the default otherwise.
    gateways: tuple[IPAddress, ...] = ()

    @property
    def compose_project(self) -> str | None:
        return self.labels.get(COMPOSE_PROJECT_LABEL)

    @property
    def compose_network(self) -> str | None:
        return self.labels.get(COMPOSE_NETWORK_LABEL)

    @property
    def bridge_name(self) -> str:
        """The host interface Docker gives a bridge network (`br-<12 hex>`)."""
        return f"br-{self.id[:12]}"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DockerNetwork:
        subnets: list[Network] = []
        gateways: list[IPAddress] = []
        for entry in (data.get("IPAM") or {}).get("Config") or []:
            subnet = (entry or {}).get("Subnet")
            if subnet:
                try:
                    subnets.append(ipaddress.ip_network(subnet, strict=False))
                except ValueError:
                    continue
            gateway = _address((entry or {}).get("Gateway"))
            if gateway is not None:
                gateways.append(gateway)
        return cls(
            id=data.get("Id", ""),
            name=data.get("Name", ""),
            subnets=tuple(subnets),
            labels=dict(data.get("Labels") or {}),
            gateways=tuple(gateways),
        )


def _address(text: str | None) -> Any:
    if not text:
        return None
    try:
        return ipaddress.ip_interface(text).ip
    except ValueError:
        return None


def _unavailable(endpoint: str, exc: BaseException) -> DockerUnavailable:
    """Turn a connection failure into a message that says what to do."""
    text = str(exc)
    if isinstance(exc, PermissionError) or "Permission denied" in text or "permission denied" in text:
        return DockerUnavailable(
            f"permission denied on the Docker daemon at {endpoint}",
            hint="add your user to the `docker` group (`sudo usermod -aG docker $USER`, then log in again), "
            "or run the command with sudo",
        )
    reason = text.splitlines()[0] if text else type(exc).__name__
    return DockerUnavailable(
        f"cannot reach the Docker daemon at {endpoint} ({reason})",
        hint="start Docker (e.g. `sudo systemctl start docker`), or point DOCKER_HOST / `docker context use` "
        "at a running daemon",
    )


def _endpoint_from_environment() -> tuple[str | None, Any]:
    """DOCKER_HOST wins, as with the docker CLI; else the active CLI context, if not `default`."""
    if os.environ.get("DOCKER_HOST"):
        return None, None  # docker.from_env() reads DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
    try:
        from docker.context import ContextAPI

        context = ContextAPI.get_current_context()
    except Exception:  # a broken context store must not hide the default socket
        return None, None
    if context is None or context.name == "default" or not context.Host:
        return None, None
    return context.Host, context.TLSConfig


@dataclass
class DockerAPI:
    """The few read-only questions scaffold asks the daemon."""

    #: The SDK's client, or on the local socket the stdlib one (see `connect(sdk=False)`).
    client: docker.DockerClient | SocketClient
    endpoint: str

    @property
    def is_local(self) -> bool:
        """Whether the daemon runs on this host (then its routes matter for subnets)."""
        parsed = urlparse(self.endpoint)
        if parsed.scheme in {"unix", "npipe", "http+unix"}:
            return True
        return parsed.scheme in {"tcp", "http", "https"} and (parsed.hostname or "") in LOCAL_HOSTS

    def networks(self) -> list[DockerNetwork]:
        try:
            return [DockerNetwork.from_api(item) for item in self.client.api.networks()]
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None

    def project_network(self, project: str, network: str) -> DockerNetwork | None:
        """The network Compose made for `network` of `project`, found by its labels."""
        for item in self.networks():
            if item.compose_project == project and item.compose_network == network:
                return item
        return None

    def attachments(self, network: DockerNetwork) -> list[Attachment]:
        """The containers on a network and their addresses on it."""
        try:
            data = self.client.api.inspect_network(network.id)
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        result = []
        for info in (data.get("Containers") or {}).values():
            result.append(
                Attachment(
                    container=info.get("Name", ""),
                    ipv4=_address(info.get("IPv4Address")),
                    ipv6=_address(info.get("IPv6Address")),
                )
            )
        return result

    def project_volume_exists(self, project: str, volume: str) -> bool:
        try:
            volumes = self.client.api.volumes(filters={"label": f"{COMPOSE_PROJECT_LABEL}={project}"})
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        return any(
            (item.get("Labels") or {}).get(COMPOSE_VOLUME_LABEL) == volume
            for item in volumes.get("Volumes") or []
        )

    def close(self) -> None:
        self.client.close()


def occupied_by_networks(
    networks: list[DockerNetwork], *, exclude: DockerNetwork | None = None
) -> list[Occupied]:
    """The subnets of every Docker network but `exclude`, as occupied ranges."""
    return [
        Occupied(subnet, f"Docker network '{item.name}'")
        for item in networks
        if exclude is None or item.id != exclude.id
        for subnet in item.subnets
    ]


def connect(*, timeout: int = 10, sdk: bool = True) -> DockerAPI:
    """A client for the daemon the docker CLI would use, checked with a ping.

    `sdk=False` is for callers that use only `DockerAPI`'s own methods: on the local unix socket
    they get the standard-library client (`scaffold.dockersocket`) and the SDK is never imported,
    which keeps the copier task fast; other endpoints still go through the SDK.
    """
    if not sdk:
        from scaffold.dockersocket import SocketClient, local_socket_path

        socket_path = local_socket_path()
        if socket_path is not None:
            local = SocketClient(socket_path, timeout=timeout)
            try:
                local.ping()
            except OSError as exc:
                raise _unavailable(f"unix://{socket_path}", exc) from None
            return DockerAPI(client=local, endpoint=f"unix://{socket_path}")
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise DockerUnavailable(
            "the Docker SDK for Python is not installed in this Python environment",
            hint="install it where copier runs: `pip install docker` (or `pipx inject copier docker`)",
        ) from None
    host, tls = _endpoint_from_environment()
    try:
        if host is not None:
            client = docker.DockerClient(
                base_url=host, tls=tls, timeout=timeout, use_ssh_client=host.startswith("ssh://")
            )
        else:
            client = docker.from_env(timeout=timeout)
    except DockerException as exc:
        endpoint = host or os.environ.get("DOCKER_HOST") or "the default socket"
        raise _unavailable(endpoint, exc) from None
    endpoint = client.api.base_url
    if endpoint.startswith("http+docker://"):
        endpoint = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client.ping()
    except Exception as exc:
        client.close()
        raise _unavailable(endpoint, exc) from None
    return DockerAPI(client=client, endpoint=endpoint)
