"""Access to the Docker daemon, with typed results and clear errors.

scaffold reads networks, volumes and containers and changes none of them: it runs as a copier task
three times per update, and Compose owns the stack's objects. What it creates: an exec instance, when
`scaffold doctor` runs a read-only command (`nginx -t`) in a running container (`DockerAPI.exec_run`,
as `docker exec` does; Docker drops it with the container); and for `scaffold backup`, `restore` and
`db upgrade`, commands inside the running PostgreSQL container (`exec_*`, `put_file`) and a throw-away
container of its image (`image_command`, removed with its volumes). The `docker` SDK is imported only
here, inside `connect`, so the CLI starts fast. Nothing outside this module calls the SDK.
"""

from __future__ import annotations

import io
import ipaddress
import os
import tarfile
from collections.abc import Iterable, Iterator, Mapping
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
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
#: What `docker stack deploy` labels a stack's networks, volumes, services and tasks with (the stack name).
STACK_NAMESPACE_LABEL = "com.docker.stack.namespace"
#: The Swarm service a task's container belongs to (`<stack>_<service>`).
SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"
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

    def belongs_to(self, project: str, network: str) -> bool:
        """Whether this is `network` of `project`: made by Compose, or by `docker stack deploy` (Swarm)."""
        if self.compose_project == project and self.compose_network == network:
            return True
        return self.labels.get(STACK_NAMESPACE_LABEL) == project and self.name == f"{project}_{network}"

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


@dataclass(frozen=True)
class ContainerSummary:
    """A container as `docker ps` lists it: enough to tell who publishes a host port."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Host TCP ports the container publishes.
    public_tcp_ports: frozenset[int] = frozenset()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ContainerSummary:
        ports = frozenset(
            int(binding["PublicPort"])
            for binding in data.get("Ports") or []
            if binding.get("PublicPort") and binding.get("Type", "tcp") == "tcp"
        )
        names = data.get("Names") or ["?"]
        return cls(
            id=data.get("Id", ""),
            name=str(names[0]).lstrip("/"),
            labels=dict(data.get("Labels") or {}),
            public_tcp_ports=ports,
        )


@dataclass(frozen=True)
class DockerContainer:
    """The parts of `docker inspect` for a container that scaffold looks at."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Docker's state word: created, running, paused, restarting, exited, dead.
    status: str = ""
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    exit_code: int | None = None
    #: When the container last started, as Docker writes it (RFC 3339 with nanoseconds).
    started_at: str | None = None
    #: The health check's state (starting, healthy, unhealthy), None without a health check.
    health: str | None = None
    #: The output of the last health check run, if any.
    health_output: str | None = None
    #: The environment the container was created with.
    env: Mapping[str, str] = field(default_factory=dict)
    #: The container's addresses on each network it is attached to, by network name.
    networks: Mapping[str, Attachment] = field(default_factory=dict)
    #: Host ports each container TCP port is published on.
    published: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def service(self) -> str | None:
        """The Compose service, or for a Swarm task the stack file's service name."""
        return self.labels.get(COMPOSE_SERVICE_LABEL) or _stack_service(self.labels)

    @property
    def one_off(self) -> bool:
        """A `docker compose run` container, not one of the project's services."""
        return self.labels.get(COMPOSE_ONEOFF_LABEL) == "True"

    def host_ports(self, container_port: int) -> list[int]:
        """The host ports `container_port`/tcp is published on, sorted."""
        return sorted(set(self.published.get(container_port, ())))

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DockerContainer:
        state = data.get("State") or {}
        health = state.get("Health") or {}
        log = health.get("Log") or []
        config = data.get("Config") or {}
        settings = data.get("NetworkSettings") or {}
        name = str(data.get("Name", "")).lstrip("/")
        return cls(
            id=data.get("Id", ""),
            name=name,
            labels=dict(config.get("Labels") or {}),
            status=state.get("Status") or "",
            running=bool(state.get("Running")),
            paused=bool(state.get("Paused")),
            restarting=bool(state.get("Restarting")),
            oom_killed=bool(state.get("OOMKilled")),
            exit_code=state.get("ExitCode"),
            started_at=state.get("StartedAt"),
            health=health.get("Status"),
            health_output=str(log[-1].get("Output", "")) if log else None,
            env=_environment(config.get("Env") or []),
            networks={
                network: Attachment(
                    name, _address(info.get("IPAddress")), _address(info.get("GlobalIPv6Address"))
                )
                for network, info in (settings.get("Networks") or {}).items()
                if info is not None
            },
            published=_published(settings.get("Ports") or {}),
        )


def _stack_service(labels: Mapping[str, str]) -> str | None:
    """`server` for a task container of the Swarm service `<stack>_server`."""
    stack, name = labels.get(STACK_NAMESPACE_LABEL), labels.get(SWARM_SERVICE_LABEL)
    if not stack or not name or not name.startswith(f"{stack}_"):
        return None
    return name.removeprefix(f"{stack}_")


@dataclass(frozen=True)
class SwarmService:
    """A service of a Swarm stack and its tasks, as `docker service ls` / `docker service ps` see them."""

    name: str
    #: `replicated` or `global`.
    mode: str
    #: Replicas asked for (replicated), or tasks Swarm wants running (global: one per eligible node).
    desired: int
    #: Tasks in state `running` (with a health check, Swarm reports `running` only once healthy).
    running: int
    #: The last update's state (`updating`, `paused`, `completed`, `rollback_*`), "" when never updated.
    update_state: str = ""
    update_message: str = ""
    #: The error of the newest task that is not running, if any.
    task_error: str = ""


def _environment(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _published(ports: Mapping[str, Any]) -> dict[int, tuple[int, ...]]:
    """`NetworkSettings.Ports` (`{"443/tcp": [{"HostIp": ..., "HostPort": "8443"}]}`) by TCP port."""
    published: dict[int, tuple[int, ...]] = {}
    for key, bindings in ports.items():
        port, _, protocol = key.partition("/")
        if protocol not in ("tcp", "") or not port.isdigit():
            continue
        hosts = [int(b["HostPort"]) for b in bindings or [] if str(b.get("HostPort", "")).isdigit()]
        published[int(port)] = tuple(hosts)
    return published


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


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
        """The network Compose (or `docker stack deploy`) made for `network` of `project`, by its labels."""
        for item in self.networks():
            if item.belongs_to(project, network):
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

    def service_container(self, project: str, service: str) -> str | None:
        """The id of the running container of a Compose service, or None when it is not running."""
        filters = {"label": [f"{COMPOSE_PROJECT_LABEL}={project}", f"{COMPOSE_SERVICE_LABEL}={service}"]}
        try:
            found = self.client.api.containers(filters=filters)
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        return found[0]["Id"] if found else None

    def container_image(self, container: str) -> str:
        """The image reference a container was created from (as written in the compose file)."""
        try:
            return self.client.api.inspect_container(container)["Config"]["Image"]
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None

    def exec_stream(self, container: str, command: list[str], *, user: str = "") -> ExecRun:
        """Run `command` in a running container; its stdout arrives in chunks, never held whole."""
        try:
            exec_id = self.client.api.exec_create(container, command, stdout=True, stderr=True, user=user)
            chunks = self.client.api.exec_start(exec_id, stream=True, demux=True)
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        return ExecRun(self, exec_id["Id"], chunks)

    def exec_output(self, container: str, command: list[str], *, user: str = "") -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of a short command in a running container."""
        run = self.exec_stream(container, command, user=user)
        out = b"".join(run.stdout())
        return run.exit_code(), out.decode("utf-8", "replace"), run.stderr_text()

    def put_file(self, container: str, directory: str, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Stream one file (mode 0600) into `directory` of a container without holding it in memory."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600

        def tar_stream() -> Iterator[bytes]:
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            yield from chunks
            padding = -size % tarfile.BLOCKSIZE
            yield b"\0" * (padding + 2 * tarfile.BLOCKSIZE)

        try:
            self.client.api.put_archive(container, directory, tar_stream())
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None

    def image_command(self, image: str, entrypoint: list[str]) -> str:
        """The output of a throw-away container of `image`, e.g. a version.

        The container goes afterwards with its anonymous volumes (an image's VOLUME would
        otherwise leave one behind per call, as `docker run --rm` does not).
        """
        from docker.errors import DockerException, ImageNotFound

        try:
            try:
                self.client.api.inspect_image(image)
            except ImageNotFound:
                self.client.images.pull(image)
            container = self.client.api.create_container(
                image, entrypoint=entrypoint, network_disabled=True, host_config={"NetworkMode": "none"}
            )["Id"]
            try:
                self.client.api.start(container)
                code = self.client.api.wait(container, timeout=120).get("StatusCode")
                output = self.client.api.logs(container, stdout=True, stderr=True)
            finally:
                self.client.api.remove_container(container, v=True, force=True)
        except DockerException as exc:
            reason = " ".join(str(exc).split())
            raise DockerUnavailable(
                f"could not run `{' '.join(entrypoint)}` in the image {image}: {reason}",
                hint="check that the image exists (`docker compose pull`) and Docker can start containers",
            ) from None
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        text = output.decode("utf-8", "replace")
        if code != 0:
            raise DockerUnavailable(
                f"`{' '.join(entrypoint)}` failed in the image {image} (exit code {code}): {text.strip()}",
                hint="check that the image is the one you meant",
            )
        return text

    def containers(
        self, *, project: str | None = None, stopped: bool = False, label: str | None = None
    ) -> list[ContainerSummary]:
        """The containers `docker ps` lists (`stopped`: those too), of one Compose project (or with one
        label) if given."""
        label = label or (f"{COMPOSE_PROJECT_LABEL}={project}" if project else None)
        filters = {"label": label} if label else None
        try:
            listed = self.client.api.containers(all=stopped, filters=filters)
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        return [ContainerSummary.from_api(item) for item in listed]

    def inspect_container(self, container_id: str) -> DockerContainer | None:
        """`docker inspect` of a container; None when it is gone (removed since it was listed)."""
        from docker.errors import NotFound

        try:
            return DockerContainer.from_api(self.client.api.inspect_container(container_id))
        except NotFound:
            return None
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None

    def project_containers(self, project: str) -> list[DockerContainer]:
        """The containers of a Compose project's services, stopped ones included, one-off `run`s not;
        on a Swarm node, the stack's task containers on this node too."""
        found = []
        summaries = self.containers(project=project, stopped=True)
        summaries += self.containers(label=f"{STACK_NAMESPACE_LABEL}={project}", stopped=True)
        for summary in summaries:
            if (
                summary.labels.get(COMPOSE_SERVICE_LABEL) or _stack_service(summary.labels)
            ) and summary.labels.get(COMPOSE_ONEOFF_LABEL) != "True":
                container = self.inspect_container(summary.id)
                if container is not None:
                    found.append(container)
        return found

    def stack_services(self, stack: str) -> list[SwarmService]:
        """The services of a Swarm stack and their tasks (needs a manager; [] when not in a swarm)."""
        from docker.errors import APIError

        try:
            services = self.client.api.services(filters={"label": f"{STACK_NAMESPACE_LABEL}={stack}"})
        except APIError as exc:
            if exc.response is not None and exc.response.status_code == 503:  # not a swarm manager
                return []
            raise _unavailable(self.endpoint, exc) from None
        except Exception as exc:
            raise _unavailable(self.endpoint, exc) from None
        return [self._swarm_service(item) for item in services]

    def _swarm_service(self, data: Mapping[str, Any]) -> SwarmService:
        spec = data.get("Spec") or {}
        mode = spec.get("Mode") or {}
        tasks = self.client.api.tasks(filters={"service": data["ID"], "desired-state": "running"})
        running = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]
        if "Global" in mode:
            kind, desired = "global", len(tasks)
        else:
            kind, desired = "replicated", int((mode.get("Replicated") or {}).get("Replicas", 1))
        errors = [
            str((t.get("Status") or {}).get("Err") or (t.get("Status") or {}).get("Message") or "")
            for t in sorted(tasks, key=lambda t: t.get("UpdatedAt", ""), reverse=True)
            if t not in running
        ]
        update = data.get("UpdateStatus") or {}
        return SwarmService(
            name=str(spec.get("Name", "")),
            mode=kind,
            desired=desired,
            running=len(running),
            update_state=str(update.get("State") or ""),
            update_message=str(update.get("Message") or ""),
            task_error=next((e for e in errors if e), ""),
        )

    def logs(self, container_id: str, *, since: int) -> str:
        """A container's output (stdout and stderr) since the Unix time `since`.

        The SDK's error passes through: a logging driver `docker logs` cannot read is not an outage.
        """
        return _text(
            self.client.api.logs(container_id, stdout=True, stderr=True, since=since, timestamps=False)
        )

    def exec_run(self, container_id: str, command: list[str]) -> tuple[int | None, str]:
        """(exit code, output) of `command` in a running container, as `docker exec` runs it.

        Docker keeps the exec instance with the container; run only commands that change nothing.
        """
        api = self.client.api
        exec_id = api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
        output = _text(api.exec_start(exec_id))
        return api.exec_inspect(exec_id).get("ExitCode"), output

    def close(self) -> None:
        self.client.close()


@dataclass
class ExecRun:
    """One running `exec`: read its stdout as a stream, then its exit code and stderr."""

    api: DockerAPI
    exec_id: str
    chunks: Any
    _stderr: io.BytesIO = field(default_factory=io.BytesIO)

    def stdout(self) -> Iterator[bytes]:
        for out, err in self.chunks:
            if err:
                self._stderr.write(err[: max(0, 65536 - self._stderr.tell())])
            if out:
                yield out

    def stderr_text(self) -> str:
        return self._stderr.getvalue().decode("utf-8", "replace").strip()

    def exit_code(self) -> int:
        try:
            code = self.api.client.api.exec_inspect(self.exec_id).get("ExitCode")
        except Exception as exc:
            raise _unavailable(self.api.endpoint, exc) from None
        return -1 if code is None else int(code)


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
