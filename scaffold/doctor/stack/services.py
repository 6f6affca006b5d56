"""doctor's running-stack checks: Docker itself, each service's state and health, whether the containers
run with the current .env and web path, nginx's configuration, and a WebSocket through nginx to authentik.

Containers are found by Compose's labels (project and service), so these checks work whatever compose
files or overrides started the stack. Each is skipped, with the reason, when the stack is not running.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import ssl
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from scaffold import envkeys
from scaffold.doctor.core import (
    NET_TIMEOUT,
    SERVICES,
    Check,
    Context,
    Outcome,
    fail,
    normalize_web_path,
    not_running_skip,
    ok,
    parse_docker_time,
    skip,
    warn,
)
from scaffold.doctor.trust import container_env

#: authentik's WebSocket endpoint, under web_path.
WEBSOCKET_SUBPATH = "ws/client/"
WEBSOCKET_PATH = "/" + WEBSOCKET_SUBPATH
WEB_PATH_KEY = "AUTHENTIK_WEB__PATH"
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
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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


def _pick_container(items: list[dict[str, Any]]) -> dict[str, Any]:
    running = [c for c in items if (c.get("State") or {}).get("Running")]
    return (running or items)[0]


def describe_service(service: str, data: dict[str, Any] | None, now: Any = None) -> Outcome:
    """Judge one service's container from its `docker inspect` data (None: no container)."""
    logs = f"`docker compose logs --tail 50 {service}` says why"
    if data is None:
        return fail(
            f"{service} has no container while the rest of the stack runs",
            f"`docker compose up -d {service}`; if it does not stay up, {logs}",
        )
    state = data.get("State") or {}
    name = str(data.get("Name", "")).lstrip("/") or service
    code = state.get("ExitCode")
    if state.get("Restarting"):
        return fail(
            f"{service} ({name}) keeps restarting (last exit code {code})",
            f"{logs}; after fixing, `docker compose up -d {service}`",
        )
    if state.get("Paused"):
        return fail(f"{service} ({name}) is paused", f"`docker compose unpause {service}`")
    if not state.get("Running"):
        status = state.get("Status") or "stopped"
        exited = f" (exit code {code})" if status == "exited" else ""
        oom = ", killed for lack of memory" if state.get("OOMKilled") else ""
        return fail(
            f"{service} ({name}) is not running: {status}{exited}{oom}",
            f"`docker compose up -d {service}`; if it stops again, {logs}",
        )
    health = (state.get("Health") or {}).get("Status")
    if health == "unhealthy":
        log = (state.get("Health") or {}).get("Log") or []
        last = _one_line(str(log[-1].get("Output", ""))) if log else ""
        detail = f": {last}" if last else ""
        return fail(
            f"{service} ({name}) is running but unhealthy{detail}",
            f"{logs}; then `docker compose restart {service}`",
        )
    if health == "starting":
        started = parse_docker_time(state.get("StartedAt"))
        since = ""
        if started is not None and now is not None:
            since = f", started {int((now - started).total_seconds())} s ago"
        return warn(
            f"{service} ({name}) is still starting (health check not passed yet{since})",
            f"wait for its health check (authentik can take two minutes); if it stays starting, {logs}",
        )
    if health == "healthy":
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


def check_env_applied(ctx: Context) -> Outcome:
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    if ctx.env is None:
        return skip("not checked: no readable .env (see files.env-present)")
    in_env = ctx.env.keys()  # an EnvDocument, not a dict
    keys = [key for key in in_env if key not in COMPOSE_ENVIRONMENT_KEYS]
    stale: dict[str, list[str]] = {}
    web_paths: dict[str, list[str]] = {}
    checked = []
    for service in ("server", "worker"):
        data = ctx.running(service)
        if data is None:
            continue
        checked.append(service)
        env = container_env(data)
        for key in keys:
            value = ctx.env.get(key)
            if value is not None and value != env.get(key):
                stale.setdefault(key, []).append(service)
        running_path = normalize_web_path(env.get(WEB_PATH_KEY))
        if running_path != ctx.web_path:
            web_paths.setdefault(running_path, []).append(service)
    if not checked:
        return skip("not checked: neither authentik server nor worker is running")
    problems, fixes = [], []
    if stale:
        listed = ", ".join(f"{key} ({' and '.join(where)})" for key, where in stale.items())
        problems.append(
            f"authentik runs with an older .env: {listed} changed since its containers were created "
            "(values not shown)"
        )
        fixes.append("`docker compose up -d` recreates the containers with the current .env")
        if envkeys.PG_PASS in stale:
            fixes.append(
                "PG_PASS changed: the database keeps its old password until you change it inside "
                "PostgreSQL too (see files.env-secrets), or authentik cannot log in"
            )
    if web_paths:
        listed = ", ".join(f"{' and '.join(where)} under {path}" for path, where in web_paths.items())
        problems.append(
            f"authentik serves ({listed}; {WEB_PATH_KEY}) elsewhere than the web_path answer {ctx.web_path}, "
            "which nginx follows: its pages and redirects miss what nginx proxies"
        )
        fixes.append(_web_path_fix(ctx))
    if problems:
        return warn("; ".join(problems), "; ".join(fixes))
    return ok(f"authentik ({' and '.join(checked)}) runs with the current .env")


def _exec(ctx: Context, container: dict[str, Any], command: list[str]) -> tuple[int | None, str]:
    assert ctx.docker is not None
    api = ctx.docker.client.api
    exec_id = api.exec_create(container["Id"], command, stdout=True, stderr=True)["Id"]
    raw = api.exec_start(exec_id)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return api.exec_inspect(exec_id).get("ExitCode"), text


def check_nginx_config(ctx: Context) -> Outcome:
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    nginx = ctx.running("nginx")
    if nginx is None:
        return skip("not checked: nginx is not running (see stack.service.nginx)")
    code, text = _exec(ctx, nginx, ["nginx", "-t"])
    if code == 0:
        return ok("`nginx -t` in the nginx container: the configuration is valid")
    problem = next((line for line in text.splitlines() if "[emerg]" in line), None) or _one_line(text)
    return fail(
        f"`nginx -t` fails in the nginx container: {problem}",
        "fix the file and line it names (`git diff nginx/` shows your edits), check with "
        "`docker compose exec nginx nginx -t`, then `docker compose exec nginx nginx -s reload` (nginx keeps "
        "serving the last good configuration meanwhile, and certificate renewals are not loaded)",
    )


@contextlib.contextmanager
def tls_to_nginx(port: int, domain: str, timeout: float = NET_TIMEOUT) -> Iterator[ssl.SSLSocket]:
    """TLS to 127.0.0.1:`port` with SNI `domain`, HTTP/1.1, unverified (doctor looks, trusts nothing)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        yield tls


def exchange_head(
    port: int, domain: str, request: str, timeout: float = NET_TIMEOUT
) -> tuple[int, dict[str, str]]:
    """Send one HTTP/1.1 request through nginx; (status, lower-cased headers) of the answer's head."""
    with tls_to_nginx(port, domain, timeout) as tls:
        tls.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def https_get(
    port: int,
    domain: str,
    host_header: str,
    path: str,
    extra_headers: dict[str, str] | None = None,
    timeout: float = NET_TIMEOUT,
) -> tuple[int, dict[str, str]]:
    """(status, headers) of `GET path` through nginx on 127.0.0.1, as a browser on the domain sends it."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host_header}",
        "User-Agent: scaffold-doctor",
        "Accept: text/html",
    ]
    lines += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
    return exchange_head(port, domain, "\r\n".join([*lines, "Connection: close", "", ""]), timeout)


def websocket_handshake(
    port: int, domain: str, host_header: str, timeout: float = NET_TIMEOUT, path: str = WEBSOCKET_PATH
) -> tuple[int, dict[str, str], bool]:
    """(status, headers, accept header correct) of a WebSocket upgrade to `path` over TLS."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: https://{host_header}\r\nUser-Agent: scaffold-doctor\r\n\r\n"
    )
    status, headers = exchange_head(port, domain, request, timeout)
    expected = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
    return status, headers, headers.get("sec-websocket-accept") == expected


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


def through_nginx_skip(ctx: Context, *, needs_server: bool = True) -> Outcome | None:
    """Why a request through nginx on 127.0.0.1 cannot be tried from here, or None when it can."""
    if (blocked := not_running_skip(ctx)) is not None:
        return blocked
    if ctx.docker is not None and not ctx.docker.is_local:
        return skip(f"not checked: the Docker daemon ({ctx.docker.endpoint}) is on another host")
    if ctx.running("nginx") is None:
        return skip("not checked: nginx is not running (see stack.service.nginx)")
    if needs_server and ctx.running("server") is None:
        return skip("not checked: authentik's server is not running (see stack.service.server)")
    return None


def unless_starting(outcome: Outcome, server: dict[str, Any]) -> Outcome:
    """A failure while authentik's server is still starting is a warning: it may pass in a minute."""
    starting = ((server.get("State") or {}).get("Health") or {}).get("Status") == "starting"
    if outcome.status == "fail" and starting:
        return warn(f"{outcome.message} (authentik is still starting)", outcome.fix)
    return outcome


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
