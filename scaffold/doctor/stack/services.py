"""doctor's running-stack checks: Docker itself, each service's state and health, whether the containers
run with the current .env and web path, nginx's configuration, and a WebSocket through nginx to authentik.

Containers are found by Compose's labels (project and service), so these checks work whatever compose
files or overrides started the stack. Each is skipped, with the reason, when the stack is not running.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from scaffold import envkeys
from scaffold.doctor.core import (
    SERVICES,
    WEB_PATH_KEY,
    Check,
    Context,
    Outcome,
    fail,
    normalize_web_path,
    not_running_skip,
    ok,
    parse_docker_time,
    running_or_skip,
    running_web_path,
    skip,
    through_nginx_skip,
    unless_starting,
    warn,
)
from scaffold.doctor.probes import WEBSOCKET_SUBPATH, run_in_container, websocket_handshake

if TYPE_CHECKING:
    from scaffold.dockerapi import DockerContainer
    from scaffold.envfile import EnvDocument

#: Keys the template's compose.yaml sets in `environment:`, which wins over `env_file: .env`: a
#: different value in .env is never applied, so comparing it would warn forever.
COMPOSE_ENVIRONMENT_KEYS = frozenset(
    {
        "AUTHENTIK_POSTGRESQL__HOST",
        "AUTHENTIK_POSTGRESQL__NAME",
        "AUTHENTIK_POSTGRESQL__USER",
        "AUTHENTIK_POSTGRESQL__PASSWORD",
        "AUTHENTIK_WEB__BASE_URL",
        WEB_PATH_KEY,
    }
)


def check_docker(ctx: Context) -> Outcome:
    error = ctx.docker_error
    if error is not None:
        return fail(f"{error.message}: doctor cannot see the stack", error.hint)
    assert ctx.docker is not None
    where = "" if ctx.docker.is_local else " (on another host: port and certificate checks are skipped)"
    return ok(f"the Docker daemon at {ctx.docker.endpoint} answers{where}")


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _pick_container(items: list[DockerContainer]) -> DockerContainer:
    running = [c for c in items if c.running]
    return (running or items)[0]


def describe_service(
    service: str, container: DockerContainer | None, now: dt.datetime | None = None
) -> Outcome:
    """Judge one service's container from what `docker inspect` says (None: no container)."""
    logs = f"`docker compose logs --tail 50 {service}` says why"
    if container is None:
        return fail(
            f"{service} has no container while the rest of the stack runs",
            f"`docker compose up -d {service}`; if it does not stay up, {logs}",
        )
    name = container.name or service
    if not container.running or container.restarting or container.paused:
        return _stopped(service, name, container, logs)
    return _health(service, name, container, logs, now)


def _stopped(service: str, name: str, container: DockerContainer, logs: str) -> Outcome:
    """A container that is restarting, paused or not running."""
    code = container.exit_code
    if container.restarting:
        return fail(
            f"{service} ({name}) keeps restarting (last exit code {code})",
            f"{logs}; after fixing, `docker compose up -d {service}`",
        )
    if container.paused:
        return fail(f"{service} ({name}) is paused", f"`docker compose unpause {service}`")
    status = container.status or "stopped"
    exited = f" (exit code {code})" if status == "exited" else ""
    oom = ", killed for lack of memory" if container.oom_killed else ""
    return fail(
        f"{service} ({name}) is not running: {status}{exited}{oom}",
        f"`docker compose up -d {service}`; if it stops again, {logs}",
    )


def _health(
    service: str, name: str, container: DockerContainer, logs: str, now: dt.datetime | None
) -> Outcome:
    """A running container, judged by its health check."""
    if container.health == "unhealthy":
        last = _one_line(container.health_output or "")
        detail = f": {last}" if last else ""
        return fail(
            f"{service} ({name}) is running but unhealthy{detail}",
            f"{logs}; then `docker compose restart {service}`",
        )
    if container.health == "starting":
        started = parse_docker_time(container.started_at)
        since = ""
        if started is not None and now is not None:
            since = f", started {int((now - started).total_seconds())} s ago"
        return warn(
            f"{service} ({name}) is still starting (health check not passed yet{since})",
            f"wait for its health check (authentik can take two minutes); if it stays starting, {logs}",
        )
    if container.health == "healthy":
        return ok(f"{service} ({name}) is running and healthy")
    return ok(f"{service} ({name}) is running (it has no health check)")


def check_service(ctx: Context, service: str) -> Outcome:
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    items = ctx.containers.get(service, [])
    return describe_service(service, _pick_container(items) if items else None, ctx.now)


def compose_web_path(root: Path) -> str | None:
    """The AUTHENTIK_WEB__PATH compose.yaml sets ("/" when it sets none); None without compose.yaml."""
    try:
        text = (root / "compose.yaml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(rf"(?m)^\s*{WEB_PATH_KEY}\s*[:=]\s*[\"']?([^\"'\s#]*)", text)
    return normalize_web_path(match.group(1) if match else "/")


def _web_path_fix(ctx: Context) -> str:
    in_compose = compose_web_path(ctx.root)
    if in_compose in (None, ctx.web_path):
        return f"`docker compose up -d` recreates authentik with {WEB_PATH_KEY} from compose.yaml"
    return (
        f"compose.yaml sets {WEB_PATH_KEY} to {in_compose}, not the web_path answer {ctx.web_path}: "
        "`scaffold update` renders it from the answer (`git diff compose.yaml` shows hand edits), then "
        "`docker compose up -d`"
    )


@dataclass
class _Drift:
    """Where the running authentik differs from .env and the web_path answer."""

    checked: list[str] = field(default_factory=list)
    #: .env keys whose value differs, with the services that run an older one.
    stale: dict[str, list[str]] = field(default_factory=dict)
    #: Web paths authentik runs under that are not web_path, with the services.
    web_paths: dict[str, list[str]] = field(default_factory=dict)


def _drift(ctx: Context, env: EnvDocument) -> _Drift:
    in_env = env.keys()  # an EnvDocument, not a dict
    keys = [key for key in in_env if key not in COMPOSE_ENVIRONMENT_KEYS]
    drift = _Drift()
    for service in ("server", "worker"):
        container = ctx.running(service)
        if container is None:
            continue
        drift.checked.append(service)
        # On Swarm .env reaches a service only where the stack file names a key; secrets come as
        # files (Swarm secrets), their variables hold `file://` references.
        swarm = ctx.answers.target == "swarm"
        for key in (k for k in keys if not swarm or (k in container.env and k not in envkeys.SECRET_KEYS)):
            value = env.get(key)
            if value is not None and value != container.env.get(key):
                drift.stale.setdefault(key, []).append(service)
        running_path = running_web_path(container)
        if running_path != ctx.web_path:
            drift.web_paths.setdefault(running_path, []).append(service)
    return drift


def check_env_applied(ctx: Context) -> Outcome:
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    if ctx.env is None:
        return skip("not checked: no readable .env (see files.env-present)")
    drift = _drift(ctx, ctx.env)
    if not drift.checked:
        return skip("not checked: neither authentik server nor worker is running")
    problems, fixes = [], []
    if drift.stale:
        listed = ", ".join(f"{key} ({' and '.join(where)})" for key, where in drift.stale.items())
        problems.append(
            f"authentik runs with an older .env: {listed} changed since its containers were created "
            "(values not shown)"
        )
        fixes.append(
            "`scaffold deploy` updates the services with the current .env"
            if ctx.answers.target == "swarm"
            else "`docker compose up -d` recreates the containers with the current .env"
        )
        if envkeys.PG_PASS in drift.stale:
            fixes.append(
                "PG_PASS changed: the database keeps its old password until you change it inside "
                "PostgreSQL too (see files.env-secrets), or authentik cannot log in"
            )
    if drift.web_paths:
        listed = ", ".join(f"{' and '.join(where)} under {path}" for path, where in drift.web_paths.items())
        problems.append(
            f"authentik serves ({listed}; {WEB_PATH_KEY}) elsewhere than the web_path answer {ctx.web_path}, "
            "which nginx follows: its pages and redirects miss what nginx proxies"
        )
        fixes.append(_web_path_fix(ctx))
    if problems:
        return warn("; ".join(problems), "; ".join(fixes))
    return ok(f"authentik ({' and '.join(drift.checked)}) runs with the current .env")


def check_nginx_config(ctx: Context) -> Outcome:
    if isinstance(nginx := running_or_skip(ctx, "nginx"), Outcome):
        return nginx
    code, text = run_in_container(ctx, nginx, ["nginx", "-t"])
    if code == 0:
        return ok("`nginx -t` in the nginx container: the configuration is valid")
    problem = next((line for line in text.splitlines() if "[emerg]" in line), None) or _one_line(text)
    return fail(
        f"`nginx -t` fails in the nginx container: {problem}",
        "fix the file and line it names (`git diff nginx/` shows your edits), check with "
        "`docker compose exec nginx nginx -t`, then `docker compose exec nginx nginx -s reload` (nginx keeps "
        "serving the last good configuration meanwhile, and certificate renewals are not loaded)",
    )


def judge_websocket(status: int, headers: dict[str, str], accept_ok: bool, url: str) -> Outcome:
    """What a WebSocket handshake answer says about nginx and authentik."""
    header_fix = (
        "nginx must pass `proxy_http_version 1.1`, `proxy_set_header Upgrade $http_upgrade` and "
        "`proxy_set_header Connection $connection_upgrade_keepalive` (see proxy.headers; the template has "
        "them in nginx/snippets/proxy-authentik.conf), then `docker compose exec nginx nginx -s reload`"
    )
    if status == 101 and accept_ok:
        return ok(f"a WebSocket upgrade to {url} through nginx reaches authentik (101 Switching Protocols)")
    if status == 101:
        return fail(f"{url} answered 101 with a wrong Sec-WebSocket-Accept", header_fix)
    if status in (502, 503, 504):
        return fail(
            f"nginx answers {status} for {url}: it cannot reach authentik's server",
            "`docker compose ps server` and `docker compose logs --tail 50 server nginx`; nginx resolves "
            "`server` at start, so after recreating authentik: `docker compose restart nginx`",
        )
    if status in (301, 302, 307, 308):
        return fail(
            f"nginx redirects {url} ({status} to {headers.get('location', '?')}) instead of proxying it",
            "check the 443 server block for the domain in nginx/conf.d/authentik.conf (`git diff nginx/`)",
        )
    if status in (401, 403):
        return fail(
            f"authentik refused the WebSocket at {url} ({status}): the Host/Origin nginx forwards do not "
            "match (authentik's CSRF check)",
            "nginx must pass the Host as the browser sent it, `proxy_set_header Host $scaffold_site_host` "
            "(see proxy.headers), and `public_url` must be the address users open (see stack.public-url)",
        )
    return fail(
        f"the WebSocket upgrade to {url} does not get through (HTTP {status} instead of 101): the UI shows "
        '"Connection error, reconnecting" and outposts cannot connect',
        header_fix,
    )


def check_websocket(ctx: Context) -> Outcome:
    if (blocked := through_nginx_skip(ctx)) is not None:
        return blocked
    server = ctx.running("server")
    assert server is not None
    path = ctx.web_path + WEBSOCKET_SUBPATH
    url = f"wss://{ctx.public_origin}{path} (via 127.0.0.1:{ctx.https_port})"
    try:
        status, headers, accept_ok = websocket_handshake(
            ctx.https_port, ctx.domain, ctx.public_origin, path=path
        )
    except (OSError, ConnectionError) as exc:
        return fail(
            f"cannot open {url}: {exc}",
            "`docker compose ps nginx`, `docker compose logs --tail 50 nginx`",
        )
    return unless_starting(judge_websocket(status, headers, accept_ok, url), server)


CHECKS = (
    Check("stack.docker", check_docker),
    *(Check(f"stack.service.{service}", partial(check_service, service=service)) for service in SERVICES),
    Check("stack.env-applied", check_env_applied),
    Check("stack.nginx-config", check_nginx_config),
    Check("stack.websocket", check_websocket),
)
