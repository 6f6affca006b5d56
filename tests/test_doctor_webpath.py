"""`scaffold doctor` and authentik under a path (`web_path`), without Docker: the login-flow walk and
its judgement, the WebSocket path, the running server's AUTHENTIK_WEB__PATH in stack.env-applied,
and the HTTPS request doctor sends (against a local TLS server). Docker is replaced by a fake that
only lists containers; the live runs against real stacks are in the e2e tests.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from scaffold.dockerapi import DockerContainer
from scaffold.doctor.core import Context, normalize_web_path
from scaffold.doctor.probes import https_get
from scaffold.doctor.stack import flow as doctor_flow
from scaffold.doctor.stack import services as doctor_stack
from scaffold.doctor.stack.flow import Hop, check_login_flow, judge_login_flow, next_path, walk
from scaffold.doctor.stack.services import check_env_applied, check_websocket, compose_web_path
from tests.helpers.doctorrun import DOMAIN, SECRETS, env_text, make_cert, offline_context

ORIGIN = DOMAIN
FLOW = "/auth/if/flow/default-authentication-flow/?next=%2Fauth%2Fif%2Fuser%2F"


def test_web_path_is_normalized_and_defaults_to_the_root(tmp_path: Path) -> None:
    assert normalize_web_path("/auth/") == "/auth/"
    assert normalize_web_path("auth") == "/auth/"
    assert normalize_web_path("/a/b") == "/a/b/"
    assert normalize_web_path(None) == normalize_web_path("") == normalize_web_path("/") == "/"
    assert offline_context(tmp_path).web_path == "/"  # a project from before the question
    assert offline_context(tmp_path, web_path="/auth/").web_path == "/auth/"


def test_next_path_stays_on_the_site() -> None:
    assert next_path(ORIGIN, "/auth/", "if/user/") == "/auth/if/user/"
    assert next_path(ORIGIN, "/auth/if/user/", FLOW) == FLOW
    assert next_path(ORIGIN, "/auth/", f"https://{DOMAIN}/auth/x/?a=1") == "/auth/x/?a=1"
    assert next_path(ORIGIN, "/auth/", f"https://{DOMAIN}:443/auth/x/") == "/auth/x/"
    assert next_path(ORIGIN, "/auth/", f"https://{DOMAIN.upper()}/auth/x/") == "/auth/x/"
    assert next_path(ORIGIN, "/auth/", f"http://{DOMAIN}/auth/x/") is None
    assert next_path(ORIGIN, "/auth/", "https://elsewhere.example.test/auth/") is None
    assert next_path(ORIGIN, "/auth/", f"https://{DOMAIN}:8443/auth/") is None
    assert next_path(f"{DOMAIN}:8443", "/auth/", f"https://{DOMAIN}:8443/auth/x/") == "/auth/x/"
    assert next_path(f"{DOMAIN}:8443", "/auth/", f"https://{DOMAIN}/auth/x/") is None


# --------------------------------------------------------------------------- judging the walk


def judge(hops: list[Hop], web_path: str = "/auth/", server: str | None = "/auth/"):
    return judge_login_flow(hops, web_path=web_path, origin=ORIGIN, server_web_path=server)


AUTHENTIK_HOPS = [
    Hop("/auth/", 302, "/auth/if/user/"),
    Hop("/auth/if/user/", 302, FLOW),
    Hop(FLOW, 200),
]


def test_login_flow_ok() -> None:
    result = judge(AUTHENTIK_HOPS)
    assert result.status == "ok"
    assert result.message == (
        f"https://{DOMAIN}/auth/ answers with authentik's login flow "
        "(/auth/if/flow/default-authentication-flow/)"
    )
    root = judge([Hop("/", 302, "/if/flow/default-authentication-flow/"), Hop("/if/flow/x/", 200)], "/", "/")
    assert root.status == "ok"


def test_login_flow_404_at_the_web_path_is_nginx() -> None:
    result = judge([Hop("/auth/", 404)])
    assert result.status == "fail" and "nginx does not proxy /auth/" in result.message
    assert "location ^~ /auth/" in (result.fix or "") and "nginx/conf.d/authentik.conf" in (result.fix or "")


def test_login_flow_404_from_authentik_without_the_web_path() -> None:
    result = judge([Hop("/auth/", 404)], server="/")
    assert result.status == "fail" and "AUTHENTIK_WEB__PATH /" in result.message
    assert "AUTHENTIK_WEB__PATH: /auth/" in (result.fix or "") and "docker compose up -d" in (
        result.fix or ""
    )


def test_login_flow_redirect_out_of_the_web_path() -> None:
    hops = [Hop("/auth/", 302, "/if/flow/default-authentication-flow/"), Hop("/if/flow/x/", 404)]
    result = judge(hops, server=None)
    assert result.status == "fail"
    assert (
        "authentik does not run under /auth/: /auth/ redirects to /if/flow/default-authentication-flow/"
        in (result.message)
    )
    assert "AUTHENTIK_WEB__PATH: /auth/" in (result.fix or "")


def test_login_flow_bad_gateway() -> None:
    result = judge([Hop("/auth/", 302, "/auth/if/user/"), Hop("/auth/if/user/", 502)])
    assert result.status == "fail" and "nginx answers 502" in result.message
    assert "cannot reach authentik" in result.message and "docker compose restart nginx" in (result.fix or "")


def test_login_flow_redirect_to_another_site() -> None:
    result = judge([Hop("/auth/", 302, "https://localhost:9443/auth/if/user/")])
    assert result.status == "fail" and "redirects to another site" in result.message
    assert f"AUTHENTIK_WEB__BASE_URL: https://{ORIGIN}" in (result.fix or "")


def test_login_flow_redirect_loop() -> None:
    loop = [
        Hop("/auth/a/" if i % 2 == 0 else "/auth/b/", 302, "/auth/b/" if i % 2 == 0 else "/auth/a/")
        for i in range(6)
    ]
    result = judge(loop)
    assert result.status == "fail" and "more than 5 redirects" in result.message


def test_login_flow_missing_flow_and_foreign_pages() -> None:
    missing = judge([Hop("/auth/", 302, FLOW), Hop(FLOW, 404)])
    assert missing.status == "fail" and "login flow is not found" in missing.message
    assert "blueprints" in (missing.fix or "")
    foreign = judge([Hop("/auth/", 200)])
    assert foreign.status == "fail" and "answers 200 but is not authentik's login flow" in foreign.message
    other = judge([Hop("/auth/", 403)])
    assert other.status == "fail" and "/auth/ 403" in other.message


# --------------------------------------------------------------------------- walk and check, with fakes


class FakeAuthentik:
    """Answers like authentik behind nginx: `routes` maps a path to (status, Location)."""

    def __init__(self, routes: dict[str, tuple[int, str | None]]) -> None:
        self.routes = routes
        self.asked: list[str] = []

    def https_get(self, port, domain, host_header, path, extra_headers=None, timeout=3.0):
        assert (port, domain, host_header) == (443, DOMAIN, DOMAIN)
        self.asked.append(path)
        status, location = self.routes.get(path, (404, None))
        return status, ({"location": location} if location else {})


class FakeDocker:
    is_local = True
    endpoint = "unix:///var/run/docker.sock"


def running(env: dict[str, str] | None = None, health: str = "healthy", cid: str = "c") -> DockerContainer:
    return DockerContainer.from_api(
        {
            "Id": cid,
            "State": {"Running": True, "Health": {"Status": health}},
            "Config": {"Env": [f"{key}={value}" for key, value in (env or {}).items()]},
        }
    )


def live_context(root: Path, containers: dict[str, list[DockerContainer]], **answers: Any) -> Context:
    ctx = offline_context(root, **answers)
    ctx.__dict__["_docker_connection"] = (FakeDocker(), None)
    ctx.__dict__["containers"] = containers
    return ctx


AUTHENTIK_ROUTES = {
    "/auth/": (302, "/auth/if/user/"),
    "/auth/if/user/": (302, FLOW),
    FLOW: (200, None),
}


def test_walk_follows_authentiks_redirects(tmp_path: Path, monkeypatch) -> None:
    fake = FakeAuthentik(AUTHENTIK_ROUTES)
    monkeypatch.setattr(doctor_flow, "https_get", fake.https_get)
    hops = walk(offline_context(tmp_path, web_path="/auth/"))
    assert hops == AUTHENTIK_HOPS
    assert fake.asked == ["/auth/", "/auth/if/user/", FLOW]


def test_walk_stops_after_five_redirects_and_at_other_sites(tmp_path: Path, monkeypatch) -> None:
    loop = FakeAuthentik({"/auth/": (302, "/auth/"), "/": (302, "https://elsewhere.example.test/")})
    monkeypatch.setattr(doctor_flow, "https_get", loop.https_get)
    assert len(walk(offline_context(tmp_path, web_path="/auth/"))) == 6
    assert len(walk(offline_context(tmp_path))) == 1


def test_login_flow_check(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(doctor_flow, "https_get", FakeAuthentik(AUTHENTIK_ROUTES).https_get)
    server = running({"AUTHENTIK_WEB__PATH": "/auth/"})
    ctx = live_context(tmp_path, {"nginx": [running()], "server": [server]}, web_path="/auth/")
    assert check_login_flow(ctx).status == "ok"

    # authentik started without AUTHENTIK_WEB__PATH: it 404s under /auth/, and doctor says why.
    plain = FakeAuthentik({"/": (302, "/if/user/")})
    monkeypatch.setattr(doctor_flow, "https_get", plain.https_get)
    ctx = live_context(tmp_path, {"nginx": [running()], "server": [running()]}, web_path="/auth/")
    result = check_login_flow(ctx)
    assert result.status == "fail" and "AUTHENTIK_WEB__PATH /" in result.message
    starting = live_context(
        tmp_path, {"nginx": [running()], "server": [running(health="starting")]}, web_path="/auth/"
    )
    result = check_login_flow(starting)
    assert result.status == "warn" and result.message.endswith("(authentik is still starting)")


def test_login_flow_check_skips_and_reports_connection_errors(tmp_path: Path, monkeypatch) -> None:
    assert check_login_flow(offline_context(tmp_path)).status == "skip"  # no Docker
    no_server = live_context(tmp_path, {"nginx": [running()]})
    assert "server is not running" in check_login_flow(no_server).message

    def refused(*args: Any, **kwargs: Any):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(doctor_flow, "https_get", refused)
    ctx = live_context(tmp_path, {"nginx": [running()], "server": [running()]})
    result = check_login_flow(ctx)
    assert result.status == "fail" and "cannot open https://" in result.message


def test_websocket_goes_to_the_web_path(tmp_path: Path, monkeypatch) -> None:
    asked: list[str] = []

    def handshake(port, domain, host_header, timeout=3.0, path="/ws/client/"):
        asked.append(path)
        return 101, {}, True

    monkeypatch.setattr(doctor_stack, "websocket_handshake", handshake)
    ctx = live_context(tmp_path, {"nginx": [running()], "server": [running()]}, web_path="/auth/")
    result = check_websocket(ctx)
    assert result.status == "ok" and f"wss://{DOMAIN}/auth/ws/client/" in result.message
    check_websocket(live_context(tmp_path, {"nginx": [running()], "server": [running()]}))
    assert asked == ["/auth/ws/client/", "/ws/client/"]


# --------------------------------------------------------------------------- stack.env-applied


def env_project(root: Path, compose: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / ".env").write_text(env_text())
    (root / ".env").chmod(0o600)
    (root / "compose.yaml").write_text(compose)
    return root


COMPOSE = """\
x-authentik-environment: &authentik-environment
  # The public URL: authentik adds AUTHENTIK_WEB__PATH to it itself.
  AUTHENTIK_WEB__BASE_URL: https://sso.example.test
{path}  AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS: ${{AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS}}
"""


def authentik_env(**extra: str) -> dict[str, str]:
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(stream=io.StringIO(env_text())).items() if v}
    return {**values, **extra}


def test_compose_web_path(tmp_path: Path) -> None:
    with_path = env_project(tmp_path / "a", COMPOSE.format(path="  AUTHENTIK_WEB__PATH: /auth/\n"))
    assert compose_web_path(with_path) == "/auth/"
    quoted = env_project(tmp_path / "b", COMPOSE.format(path="  AUTHENTIK_WEB__PATH: '/sso/'\n"))
    assert compose_web_path(quoted) == "/sso/"
    assert compose_web_path(env_project(tmp_path / "c", COMPOSE.format(path=""))) == "/"
    assert compose_web_path(tmp_path / "none") is None


def test_env_applied_reports_a_server_under_another_path(tmp_path: Path) -> None:
    root = env_project(tmp_path / "p", COMPOSE.format(path="  AUTHENTIK_WEB__PATH: /auth/\n"))
    right = running(authentik_env(AUTHENTIK_WEB__PATH="/auth/"))
    ctx = live_context(root, {"server": [right], "worker": [right]}, web_path="/auth/")
    assert check_env_applied(ctx).status == "ok"

    stale = running(authentik_env())  # created before web_path was set
    ctx = live_context(root, {"server": [stale], "worker": [right]}, web_path="/auth/")
    result = check_env_applied(ctx)
    assert result.status == "warn"
    assert "server under /" in result.message and "web_path answer /auth/" in result.message
    assert "worker" not in result.message
    assert (
        result.fix == "`docker compose up -d` recreates authentik with AUTHENTIK_WEB__PATH from compose.yaml"
    )
    for secret in SECRETS.values():
        assert secret not in result.message

    # compose.yaml itself lacks the path: recreating would not help, re-rendering does.
    bare = env_project(tmp_path / "q", COMPOSE.format(path=""))
    result = check_env_applied(live_context(bare, {"server": [stale]}, web_path="/auth/"))
    assert result.status == "warn" and "compose.yaml sets AUTHENTIK_WEB__PATH to /" in (result.fix or "")
    assert "scaffold update" in (result.fix or "")

    # "/" is the same as no AUTHENTIK_WEB__PATH at all.
    slash = running(authentik_env(AUTHENTIK_WEB__PATH="/"))
    assert check_env_applied(live_context(bare, {"server": [slash], "worker": [stale]})).status == "ok"


# --------------------------------------------------------------------------- the request doctor sends


@pytest.fixture
def tls_server(tmp_path: Path):
    """A one-shot TLS server on 127.0.0.1 that records the SNI and the request, and answers a 302."""
    der, key = make_cert(names=(DOMAIN,))
    (tmp_path / "cert.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen: dict[str, Any] = {}
    context.sni_callback = lambda sock, name, ctx: seen.__setitem__("sni", name)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(4096)
            seen["request"] = data.decode()
            tls.sendall(b"HTTP/1.1 302 Found\r\nLocation: /auth/if/user/\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen
    thread.join(timeout=5)
    listener.close()


def test_https_get_sends_sni_host_and_headers(tls_server) -> None:
    port, seen = tls_server
    status, headers = https_get(
        port, DOMAIN, f"{DOMAIN}:8443", "/auth/?x=1", {"X-Forwarded-For": "203.0.113.77"}
    )
    assert (status, headers["location"]) == (302, "/auth/if/user/")
    assert seen["sni"] == DOMAIN
    lines = seen["request"].split("\r\n")
    assert lines[0] == "GET /auth/?x=1 HTTP/1.1"
    assert f"Host: {DOMAIN}:8443" in lines and "X-Forwarded-For: 203.0.113.77" in lines
    assert "Connection: close" in lines
