"""Issue 15, end to end: other apps behind authentik's login, on ONE generated stack on the real daemon.

The stack has two apps in front of the echo app stand-in: `web` (plain HTTP, `/api/` bypasses the
login) and `live` (WebSockets). Requests come from this host to the published HTTPS port with the
app's name as SNI and Host (`app:port`, as a browser on the published port sends them); the login is
the stand-in's: the embedded outpost, authentik's authorize step and the identification stage.
Then `scaffold app add` and `scaffold app remove` on the running stack: a new host gets its own pebble
certificate within seconds, without restarting nginx; a removed one is refused and no longer renewed.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from tests.helpers.clients import nginx_master_pid, served_certificate
from tests.helpers.forwardauth import (
    ECHO_UPSTREAM,
    Browser,
    pebble_issued,
    serve_echo_app,
    wait_for_pebble_certificates,
)
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, REPO_ROOT, Stack, running_stack
from tests.helpers.templaterepo import make_template_repo

pytestmark = pytest.mark.docker

WEB, LIVE, LATE, STAFF = "web.example.test", "live.example.test", "late.example.test", "staff.example.test"
APPS = {
    "web": {"host": WEB, "upstream": ECHO_UPSTREAM, "bypass": ["/api/"]},
    "live": {"host": LIVE, "upstream": ECHO_UPSTREAM},
    "staff": {"host": STAFF, "upstream": ECHO_UPSTREAM, "group": "staff"},
}
#: The user's own blueprint beside the generated one: alice is in the group `staff` app requires.
PEOPLE = """version: 1
metadata: {name: test people}
entries:
  - model: authentik_core.group
    identifiers: {name: staff}
    attrs:
      users:
        - !Find [authentik_core.user, [username, alice]]
"""
#: Every identity header authentik's outpost documents: a client sends them all, forged.
FORGED = {
    "X-authentik-username": "akadmin-forged",
    "X-authentik-groups": "admins",
    "X-authentik-entitlements": "all",
    "X-authentik-email": "forged@example.test",
    "X-authentik-name": "Forged",
    "X-authentik-uid": "0",
    "X-authentik-jwt": "forged.jwt",
    "X-authentik-meta-jwks": "https://evil.example.test/jwks",
    "X-authentik-meta-outpost": "forged",
    "X-authentik-meta-provider": "forged",
    "X-authentik-meta-app": "forged",
    "X-authentik-meta-version": "forged",
}
PLACEHOLDER_CN = "scaffold placeholder certificate"


def _git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True)


def _make_repository(stack: Stack) -> None:
    """A project as `scaffold new` leaves it (git, first commit); the test's own files stay out."""
    _git(stack.dir, "init", "-q")
    (stack.dir / ".git" / "info" / "exclude").write_text("compose.test.yaml\npebble-ca.pem\n")
    _git(stack.dir, "add", "-A")
    _git(stack.dir, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qm", "generated")


def scaffold(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """This checkout's `scaffold` in the project, as a user runs it."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.test",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.test",
    }
    return subprocess.run(
        [sys.executable, "-m", "scaffold", *args], cwd=stack.dir, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    # A tagged copy of this checkout: `scaffold app add` updates to the project's own version (v1.0.0).
    template = make_template_repo(tmp_path_factory.mktemp("template"))
    data = {"apps": APPS}
    with running_stack(tmp_path_factory.mktemp("fwdauth"), standin_images, data, template=template) as stack:
        serve_echo_app(stack, [WEB, LIVE, LATE, STAFF])
        (stack.dir / "blueprints" / "zz-people.yaml").write_text(PEOPLE)
        _make_repository(stack)
        stack.up()
        wait_for_pebble_certificates(stack, [WEB, LIVE, STAFF])
        yield stack


# --------------------------------------------------------------------------- the login


def test_each_app_host_has_its_own_pebble_certificate(stack: Stack) -> None:
    for host in (WEB, LIVE, DOMAIN):
        cert = served_certificate(stack, host)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [host], (host, names)


def test_unauthenticated_request_is_sent_to_authentiks_login_on_authentiks_host(stack: Stack) -> None:
    browser = Browser(stack)
    hops = browser.walk(f"https://{browser.host(WEB)}/private?q=1")
    first = hops[0][1]
    assert first.status == 302 and first.headers["location"].startswith(
        "/outpost.goauthentik.io/start?rd="
    ), first
    urls = [url for url, _ in hops]
    assert any(url.startswith(f"https://{browser.host(DOMAIN)}/application/o/authorize/") for url in urls), (
        urls
    )
    assert urlsplit(urls[-1]).netloc == browser.host(DOMAIN) and "/flow" in urls[-1], urls
    assert hops[-1][1].status == 200


def test_after_login_the_app_answers_and_sees_the_outpost_s_identity(stack: Stack) -> None:
    browser = Browser(stack)
    hops = browser.log_in(WEB)
    final_url, final = hops[-1]
    assert final_url == f"https://{browser.host(WEB)}/after-login?x=1", [u for u, _ in hops]
    seen = final.json()
    assert seen["headers"]["x-authentik-username"] == "akadmin", seen["headers"]
    assert seen["path"] == "/after-login"
    # The session is the app host's own: authentik's other app still asks for a login.
    assert browser.request(f"https://{browser.host(LIVE)}/").status == 302


def test_an_app_with_a_group_admits_its_members_only(stack: Stack) -> None:
    member = Browser(stack)
    hops = member.log_in(STAFF, "alice")
    seen = hops[-1][1].json()
    assert (seen["headers"]["x-authentik-username"], seen["headers"]["x-authentik-groups"]) == (
        "alice",
        "staff",
    )
    outsider = Browser(stack)
    url, answer = outsider.log_in(STAFF, "akadmin")[-1]
    assert urlsplit(url).hostname == DOMAIN and b"Access denied" in answer.body, (url, answer.status)
    assert outsider.request(f"https://{outsider.host(STAFF)}/").status == 302  # still no session there


def test_forged_identity_headers_never_reach_the_app(stack: Stack) -> None:
    anonymous = Browser(stack)
    # Without a session: the login, never the app.
    answer = anonymous.request(f"https://{anonymous.host(WEB)}/", FORGED)
    assert answer.status == 302, answer
    # On the bypass path (no login there), none of them arrive.
    seen = anonymous.echo(WEB, "/api/forged", FORGED)
    assert not [name for name in seen["headers"] if name.startswith("x-authentik-")], seen["headers"]
    # With a session, only the outpost's values arrive.
    browser = Browser(stack)
    browser.log_in(WEB)
    seen = browser.echo(WEB, "/with-session", FORGED)
    received = {k: v for k, v in seen["headers"].items() if k.startswith("x-authentik-")}
    assert received["x-authentik-username"] == "akadmin", received
    assert not [v for v in received.values() if "forged" in v.lower() or v in ("admins", "all", "0")], (
        received
    )


def test_a_bypass_path_answers_without_login_and_the_rest_needs_it(stack: Stack) -> None:
    browser = Browser(stack)
    assert browser.echo(WEB, "/api/v1/status")["path"] == "/api/v1/status"
    for path in ("/", "/apix", "/other/api/", "/API/"):
        answer = browser.request(f"https://{browser.host(WEB)}{path}")
        assert answer.status == 302, (path, answer.status)


def _websocket(stack: Stack, host: str, cookie: str) -> tuple[int, bytes]:
    """A WebSocket handshake with the session cookie, one text message; (status, echo)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    key = base64.b64encode(os.urandom(16)).decode()
    with (
        socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        request = (
            f"GET /socket HTTP/1.1\r\nHost: {host}:{stack.https_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        )
        tls.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(1)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            return status, b""
        payload, mask = b"hello through forward auth", os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        tls.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        frame = tls.recv(2)
        return status, tls.recv(frame[1] & 0x7F)


def test_the_websocket_upgrades_through_the_auth_check(stack: Stack) -> None:
    browser = Browser(stack)
    status, _ = _websocket(stack, LIVE, "")
    assert status == 302, "an upgrade without a session must go to the login"
    browser.log_in(LIVE)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies[LIVE].items())
    assert _websocket(stack, LIVE, cookie) == (101, b"hello through forward auth")


def test_doctor_checks_every_app_through_nginx(stack: Stack) -> None:
    result = scaffold(stack, "doctor", "--json")
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    for check in ("apps.certificate", "apps.outpost", "apps.login-redirect", "apps.upstream"):
        assert checks[check]["status"] == "ok", checks[check]
        assert "web:" in checks[check]["message"] and "live:" in checks[check]["message"], checks[check]
    # The test's host names resolve nowhere: DNS fails, and says so for each app.
    assert checks["apps.dns"]["status"] == "fail" and WEB in checks["apps.dns"]["message"]
    # An app whose service is gone: nginx cannot reach it, and doctor names it.
    stack.compose("stop", "echo")
    try:
        down = json.loads(scaffold(stack, "doctor", "--json").stdout)
        upstream = {c["id"]: c for c in down["checks"]}["apps.upstream"]
        assert upstream["status"] == "fail" and "echo:8080" in upstream["message"], upstream
    finally:
        stack.compose("start", "echo")


# --------------------------------------------------------------------------- app add / remove live


def test_app_add_on_a_running_stack_gets_its_certificate_without_restarting_nginx(stack: Stack) -> None:
    pid = nginx_master_pid(stack)
    result = scaffold(stack, "app", "add", "late", "--host", LATE, "--upstream", "http://echo:8080")
    assert result.returncode == 0, result.stdout + result.stderr
    added = time.monotonic()
    wait_for(lambda: pebble_issued(stack, LATE), f"a pebble certificate for {LATE}", timeout=60,
             context=lambda: stack.logs("certbot")[-2000:] + stack.logs("nginx")[-2000:]
             + stack.compose("ps", "-a").stdout + stack.logs("server")[-3000:])  # fmt: skip
    took = time.monotonic() - added
    assert nginx_master_pid(stack) == pid, "nginx was restarted"
    browser = Browser(stack)
    assert browser.request(f"https://{browser.host(LATE)}/").status == 302  # behind the login at once
    assert browser.log_in(LATE)[-1][1].json()["headers"]["x-authentik-username"] == "akadmin"
    print(f"{LATE}: pebble certificate served {took:.1f} s after `scaffold app add` returned")
    assert (
        "scaffold app add late"
        in subprocess.run(
            ["git", "log", "-1", "--format=%s"], cwd=stack.dir, capture_output=True, text=True, check=True
        ).stdout
    )


def test_app_remove_refuses_the_host_and_stops_its_renewal(stack: Stack) -> None:
    pid = nginx_master_pid(stack)
    result = scaffold(stack, "app", "remove", "late")
    assert result.returncode == 0, result.stdout + result.stderr

    def refused() -> bool:
        try:
            served_certificate(stack, LATE)
        except (ssl.SSLError, ConnectionError):
            return True
        return False

    wait_for(refused, f"nginx to refuse {LATE}", timeout=30, context=lambda: stack.logs("nginx")[-2000:])
    assert nginx_master_pid(stack) == pid
    wait_for(
        lambda: [line for line in stack.logs("certbot").splitlines() if "the host list changed" in line][-1:],
        "certbot to read the new host list",
        timeout=30,
    )
    last = [line for line in stack.logs("certbot").splitlines() if "the host list changed" in line][-1]
    assert LATE not in last and WEB in last and STAFF in last, last
    renew = stack.exec("certbot", "sh", "-c", "cat /opt/scaffold/hosts").stdout
    assert LATE not in renew
