"""What doctor's checks share: the shape of a finding, and the facts several checks need.

Facts (the .env document, the Docker client, the project's containers and proxy network) are
gathered lazily and once, so that a check that is skipped costs nothing and a healthy stack is
checked in about a second. Nothing here changes the project or any Docker object.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from scaffold import envkeys
from scaffold.answers import Answers
from scaffold.layout import ProjectLayout

if TYPE_CHECKING:
    from scaffold.dockerapi import DockerAPI, DockerContainer, DockerNetwork
    from scaffold.doctor.upstream import UpstreamAnswer
    from scaffold.envfile import EnvDocument
    from scaffold.subnets import Network


class Status(StrEnum):
    """A check's verdict; its value is the word doctor prints and writes to `--json`."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


OK, WARN, FAIL, SKIP = Status.OK, Status.WARN, Status.FAIL, Status.SKIP
STATUSES = tuple(Status)
#: The services of the template's compose.yaml, in start order. Their check ids are public.
SERVICES = ("postgresql", "server", "worker", "nginx", "certbot")
#: Secret values shorter than this are not searched for in files (too many false matches).
MIN_SEARCHABLE_SECRET = 8
REDACTED = "<redacted>"
T = TypeVar("T")
#: Seconds for any single network operation (connect, TLS handshake, HTTP answer, DNS).
NET_TIMEOUT = 3.0
#: Where compose.yaml tells authentik its web path (it wins over .env).
WEB_PATH_KEY = "AUTHENTIK_WEB__PATH"
#: The fix step that loads a changed nginx configuration (and shows the error when it cannot).
RELOAD = "`docker compose exec nginx nginx -t && docker compose exec nginx nginx -s reload`"


@dataclass(frozen=True)
class Outcome:
    """What one check found: a status, what was found, and how to fix it (None when nothing to fix)."""

    status: Status
    message: str
    fix: str | None = None


def ok(message: str) -> Outcome:
    return Outcome(OK, message)


def warn(message: str, fix: str | None) -> Outcome:
    return Outcome(WARN, message, fix)


def fail(message: str, fix: str | None) -> Outcome:
    return Outcome(FAIL, message, fix)


def skip(message: str, fix: str | None = None) -> Outcome:
    return Outcome(SKIP, message, fix)


@dataclass(frozen=True)
class Result:
    """One line of doctor's report; `id` is a public interface (docs/doctor.md)."""

    id: str
    status: Status
    message: str
    fix: str | None = None

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


CheckFunction = Callable[["Context"], Outcome]


@dataclass(frozen=True)
class Check:
    id: str
    run: CheckFunction


def parse_docker_time(text: str | None) -> dt.datetime | None:
    """Docker's RFC 3339 times (nanoseconds, `Z`) as aware datetimes; None for Docker's zero time."""
    if not text or text.startswith("0001-"):
        return None
    base, _, rest = text.partition(".")
    zone = "+00:00"
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits) :]
        zone = "+00:00" if tail in ("", "Z") else tail
        base = f"{base}.{digits[:6]}"
    elif base.endswith("Z"):
        base = base[:-1]
    try:
        return dt.datetime.fromisoformat(base + zone)
    except ValueError:
        return None


def normalize_web_path(value: Any) -> str:
    """A web path with one leading and one trailing slash, "/" when empty (as authentik reads it)."""
    inner = str(value or "").strip().strip("/")
    return f"/{inner}/" if inner else "/"


class Fact(Generic[T]):
    """A fact several checks need, computed once per doctor run and typed by its function.

    `@Fact` on `def observe(ctx) -> Observed` makes `observe(ctx)` compute on first use and return the
    same `Observed` after; `observe.seed(ctx, value)` supplies it up front (tests, known answers).
    """

    def __init__(self, compute: Callable[[Context], T]) -> None:
        self.compute = compute
        self.__doc__ = compute.__doc__

    def __call__(self, ctx: Context) -> T:
        if self not in ctx.facts:
            ctx.facts[self] = self.compute(ctx)
        value: T = ctx.facts[self]
        return value

    def seed(self, ctx: Context, value: T) -> None:
        ctx.facts[self] = value


@dataclass
class Context:
    """The project being checked and lazily gathered facts about it."""

    root: Path
    answers: Answers
    offline: bool = False
    results: dict[str, Result] = field(default_factory=dict)
    #: Facts one check gathers for the checks after it (e.g. the served certificate), by `Fact`.
    facts: dict[Fact[Any], Any] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def layout(self) -> ProjectLayout:
        return ProjectLayout(self.root)

    @property
    def project(self) -> str:
        return self.answers.project_name

    @property
    def domain(self) -> str:
        return self.answers.domain

    def answer(self, key: str, default: Any = None) -> Any:
        return (self.answers.raw or {}).get(key, default)

    @cached_property
    def http_port(self) -> int:
        """0: no HTTP port is published (the DNS challenge needs none)."""
        value = self.answer("http_port", 80)
        return 0 if value == 0 else int(value or 80)

    @cached_property
    def https_port(self) -> int:
        return int(self.answer("https_port", 443) or 443)

    @property
    def public_url(self) -> str:
        """Where users reach authentik (the `public_url` answer), e.g. https://sso.example.com."""
        return self.answers.public_url

    @property
    def public_origin(self) -> str:
        """The public URL's host and port as a browser sends them in Host (`sso.example.com:8443`)."""
        return self.public_url.split("://", 1)[-1].rstrip("/")

    @cached_property
    def web_path(self) -> str:
        """The `web_path` answer: where authentik lives on the domain ("/" for projects without it)."""
        return normalize_web_path(self.answer("web_path", "/"))

    @cached_property
    def upstream_answer(self) -> UpstreamAnswer:
        """The `upstream_proxies` answer as found on disk, parsed once for every check that needs it."""
        from scaffold.doctor.upstream import ANSWER, parse_upstream_proxies

        return parse_upstream_proxies(self.answer(ANSWER, ""))

    @cached_property
    def trusted_upstream(self) -> list[Network]:
        """The ranges upstream_proxies means, Cloudflare's (from the project's file) included."""
        from scaffold.doctor.upstream import trusted_upstream

        return trusted_upstream(self.root, self.upstream_answer)

    def status_of(self, check_id: str) -> Status | None:
        result = self.results.get(check_id)
        return None if result is None else result.status

    # -- .env -------------------------------------------------------------------------------------------

    @cached_property
    def _env_loaded(self) -> tuple[EnvDocument | None, str | None]:
        from scaffold.envfile import EnvDocument
        from scaffold.errors import EnvFileError

        path = self.layout.env_file
        if not path.exists():
            return None, f"{path.name} does not exist"
        try:
            return EnvDocument.load(path), None
        except EnvFileError as exc:
            return None, exc.message

    @property
    def env(self) -> EnvDocument | None:
        """The .env document, or None when it is missing or unreadable (`env_error` says which)."""
        return self._env_loaded[0]

    @property
    def env_error(self) -> str | None:
        return self._env_loaded[1]

    def env_value(self, key: str) -> str | None:
        """The value Compose reads for `key`, stripped; None when unset or empty."""
        env = self.env
        value = None if env is None else env.get(key)
        return value.strip() or None if value is not None else None

    @cached_property
    def secrets(self) -> list[str]:
        """Secret values in .env, longest first, for searching and for redaction."""
        values = {self.env_value(key) for key in envkeys.SECRET_KEYS}
        return sorted((v for v in values if v), key=len, reverse=True)

    def redact(self, text: str | None) -> str | None:
        """`text` with every secret value of .env replaced: doctor never prints a secret."""
        if text is None:
            return None
        for value in self.secrets:
            if len(value) >= 4:
                text = text.replace(value, REDACTED)
        return text

    # -- Docker -----------------------------------------------------------------------------------------

    @cached_property
    def _docker_connection(self) -> tuple[DockerAPI | None, Any]:
        from scaffold.dockerapi import connect
        from scaffold.errors import DockerUnavailable

        try:
            return connect(timeout=5), None
        except DockerUnavailable as exc:
            return None, exc

    @property
    def docker(self) -> DockerAPI | None:
        return self._docker_connection[0]

    @property
    def docker_error(self) -> Any:
        """The DockerUnavailable error when the daemon cannot be used, else None."""
        return self._docker_connection[1]

    @property
    def docker_is_local(self) -> bool:
        return self.docker is not None and self.docker.is_local

    @cached_property
    def proxy_network(self) -> DockerNetwork | None:
        """The project's `proxy` network as Docker reports it (found by Compose's labels)."""
        from scaffold.network import PROXY_NETWORK

        if self.docker is None:
            return None
        return self.docker.project_network(self.project, PROXY_NETWORK)

    @cached_property
    def containers(self) -> dict[str, list[DockerContainer]]:
        """The project's containers (not one-off `run`s), by service."""
        if self.docker is None:
            return {}
        found: dict[str, list[DockerContainer]] = {}
        for container in self.docker.project_containers(self.project):
            found.setdefault(container.service or "", []).append(container)
        return found

    def running(self, service: str) -> DockerContainer | None:
        """A running container of `service`, if any."""
        return next((c for c in self.containers.get(service, []) if c.running), None)

    @property
    def stack_running(self) -> bool:
        return any(self.running(service) for service in SERVICES)

    def close(self) -> None:
        if "_docker_connection" in self.__dict__ and self.docker is not None:
            self.docker.close()


def not_running_skip(ctx: Context) -> Outcome | None:
    """The skip that every running-stack check gives when there is no stack to look at."""
    if ctx.docker is None:
        return skip("not checked: the Docker daemon cannot be used (see stack.docker)")
    if not ctx.stack_running:
        return skip(
            f"not checked: no container of project '{ctx.project}' is running",
            "start the stack with "
            + ("`scaffold deploy`" if ctx.answers.target == "swarm" else "`docker compose up -d`")
            + " to run this check",
        )
    return None


def running_or_skip(ctx: Context, service: str) -> DockerContainer | Outcome:
    """The running container of `service`, or the skip a check that looks at it gives."""
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    container = ctx.running(service)
    if container is None:
        return skip(f"not checked: {service} is not running (see stack.service.{service})")
    return container


def through_nginx_skip(ctx: Context, *, needs_server: bool = True) -> Outcome | None:
    """Why a request through nginx on 127.0.0.1 cannot be tried from here, or None when it can."""
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    if ctx.docker is not None and not ctx.docker.is_local:
        return skip(f"not checked: the Docker daemon ({ctx.docker.endpoint}) is on another host")
    if isinstance(nginx := running_or_skip(ctx, "nginx"), Outcome):
        return nginx
    if needs_server and ctx.running("server") is None:
        return skip("not checked: authentik's server is not running (see stack.service.server)")
    return None


def running_web_path(container: DockerContainer) -> str:
    """The web path authentik in `container` serves under (its AUTHENTIK_WEB__PATH, normalized)."""
    return normalize_web_path(container.env.get(WEB_PATH_KEY))


def unless_starting(outcome: Outcome, server: DockerContainer) -> Outcome:
    """A failure while authentik's server is still starting is a warning: it may pass in a minute."""
    if outcome.status == FAIL and server.health == "starting":
        return warn(f"{outcome.message} (authentik is still starting)", outcome.fix)
    return outcome
