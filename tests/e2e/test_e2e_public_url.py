"""Issue 12 and issue 13 item 11, end to end: the public URL is not the published port.

ONE stack with `public_url=https://DOMAIN` and nginx published on a random high port, as behind a
router that forwards public port 443 to it. Requests go from this host to 127.0.0.1:<published
port> exactly as they arrive through such a forward (the browser names the host without a port),
and as a browser on the local network sends them when it opens the published port itself (host
and port). authentik's stand-in applies authentik's CSRF Origin check, so a login POST passes
exactly when real authentik would accept it. Requests for other hosts must never reach authentik.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.helpers.browser import login, published_request, wait_until_served, walk
from tests.helpers.clients import curl, json_log
from tests.helpers.doctorrun import Doctor, secrets_of
from tests.helpers.stack import DOMAIN, Stack, running_stack, unique_name

pytestmark = pytest.mark.docker

PUBLIC = f"https://{DOMAIN}"


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """public_url without a port, nginx on a high host port: what a router's port forward needs."""
    with running_stack(tmp_path_factory.mktemp("router"), standin_images, {"public_url": PUBLIC}) as stack:
        stack.up()
        wait_until_served(stack)
        yield stack


@pytest.mark.parametrize(
    "on_published_port", [False, True], ids=["through-the-router", "on-the-published-port"]
)
def test_login_flow_and_post_work_however_the_browser_arrives(router: Stack, on_published_port: bool) -> None:
    """Through the router the browser names `domain`, on the LAN `domain:port`: both reach the login
    flow on the address they used, and both login POSTs pass authentik's CSRF check."""
    host = f"{DOMAIN}:{router.https_port}" if on_published_port else DOMAIN
    hops = walk(router.https_port, host)
    urls = [url for url, _ in hops]
    assert hops[-1][1].status == 200 and b"<ak-flow-executor" in hops[-1][1].body, hops
    assert urls[-1].startswith(f"https://{host}/if/flow/default-authentication-flow/"), urls
    assert all(url.startswith(f"https://{host}/") for url in urls), f"a redirect left {host}: {urls}"

    answer = login(router.https_port, host, f"https://{host}")
    assert answer.status == 200, f"the login POST was refused: {answer}"
    assert answer.json() == {"component": "xak-flow-redirect", "to": "/if/user/"}

    seen = published_request(router.https_port, "/api/v3/root/config/", {"Host": host}).json()
    assert (seen["host"], seen["scheme"], seen["trusted_peer"]) == (host, "https", True), seen


def test_login_post_from_another_origin_is_refused(router: Stack) -> None:
    """The stand-in's CSRF check is live through nginx: a foreign Origin is what authentik refuses."""
    answer = login(router.https_port, DOMAIN, "https://evil.example")
    assert answer.status == 403, answer
    assert b"Origin checking failed - https://evil.example" in answer.body, answer


def test_http_redirects_to_the_public_url(router: Stack) -> None:
    path = "/if/flow/initial-setup/?next=%2Fadmin%2F&x=1"
    for host in (DOMAIN, f"{DOMAIN}:{router.http_port}"):
        answer = published_request(router.http_port, path, {"Host": host}, tls=False)
        assert (answer.status, answer.headers.get("location")) == (301, f"{PUBLIC}{path}"), (host, answer)


@pytest.mark.parametrize(
    "host",
    ["evil.example", f"{DOMAIN}:1234", f"{DOMAIN}.evil.example", "127.0.0.1"],
)
def test_a_foreign_host_never_reaches_authentik(router: Stack, host: str) -> None:
    """SNI is the domain (the certificate matches), the Host is another: 421, never authentik."""
    marker = unique_name("foreign")
    for method, body in (("GET", None), ("POST", b"{}")):
        answer = published_request(router.https_port, f"/{marker}", {"Host": host}, method=method, body=body)
        assert answer.status == 421, f"{method} with Host {host!r}: {answer}"
        assert b"Welcome to nginx" not in answer.body and b'"host"' not in answer.body, answer
    time.sleep(1.5)  # the stand-in flushes its access log in batches
    assert not [e for e in json_log(router, "server") if marker in str(e.get("event", ""))]


def test_a_request_without_host_never_reaches_authentik(router: Stack) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", router.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        head = tls.recv(4096)
    assert head.startswith(b"HTTP/1.1 421 "), head


def test_forged_forwarded_host_does_not_change_the_host(router: Stack) -> None:
    headers = {
        "Host": DOMAIN,
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "host=evil.example;proto=http",
        "X-Forwarded-Proto": "http",
    }
    seen = published_request(router.https_port, "/forged-host", headers).json()
    assert (seen["host"], seen["scheme"]) == (DOMAIN, "https"), seen
    assert seen["headers"]["x-forwarded-host"] == DOMAIN, seen["headers"]


def test_http2_passes_the_host_and_refuses_a_foreign_one(router: Stack) -> None:
    """Browsers speak HTTP/2: the :authority must reach authentik as the Host, a foreign one must not."""
    nginx_ip = router.nginx_address("client")
    base = ["-k", "--http2", "--resolve", f"{DOMAIN}:443:{nginx_ip}", "-w", "\n%{http_version} %{http_code}"]
    result = curl(router, *base, f"https://{DOMAIN}/over-http2")
    body, _, last = result.stdout.rpartition("\n")
    assert last == "2 200", result.stdout
    assert json.loads(body)["host"] == DOMAIN, body
    result = curl(router, *base, "-H", "Host: evil.example", f"https://{DOMAIN}/over-http2", check=False)
    assert result.stdout.rpartition("\n")[2] == "2 421", result.stdout


def test_doctor_follows_the_public_url(router: Stack) -> None:
    """doctor asks as a browser on the public URL does; it warns that nothing here publishes port 443
    while no upstream proxy is listed, and names the answer to change if users open the port."""
    doctor = Doctor(router.dir, "--offline", secrets=secrets_of(router))
    for check_id in ("stack.login-flow", "stack.websocket", "proxy.headers"):
        assert doctor.status(check_id) == "ok", doctor
    assert f"{PUBLIC}/" in doctor.checks["stack.login-flow"]["message"], doctor
    check = doctor.checks["stack.public-url"]
    assert check["status"] == "warn", doctor
    assert f"public_url={PUBLIC}:{router.https_port}" in check["fix"], check
