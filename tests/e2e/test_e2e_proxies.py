"""authentik under a path, and behind a chain of proxies: generated stacks on the real daemon.

`web_path=/auth/` runs the whole stack with pebble as the ACME CA: the certificate flow, the login
flow and a WebSocket under the path, and nothing outside the path reaching authentik.

The chain tests put a second proxy (an nginx container of the stand-in image, set up like a load
balancer or like Cloudflare) in front of the stack's nginx, on a network of its own, and list it in
`upstream_proxies`. Clients run on the test-only `client` network, outside every trusted range.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import LOGIN, LOGIN_BODY
from tests.helpers.clients import (
    WSCLIENT,
    common_name,
    curl,
    json_log,
    json_log_through,
    run_client_script,
    served_certificate,
)
from tests.helpers.doctorrun import Doctor, secrets_of
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, OVERRIDE, Stack, running_stack, unique_name
from tests.helpers.stack import docker as docker_cli

pytestmark = pytest.mark.docker

FORGED = "203.0.113.77"
# The "Cloudflare edge" never takes a real Cloudflare address: the chain test swaps this test-only
# ranges file (TEST-NET-2, 198.51.100.0/24) in for the template's cloudflare-ranges.conf and puts the
# edge network inside that documentation range, so nginx sees its proxy connect from a "Cloudflare"
# address that routes nowhere.
TEST_CLOUDFLARE_RANGES = Path(__file__).resolve().parents[1] / "fixtures" / "cloudflare-ranges.test.conf"
TEST_CLOUDFLARE_RANGE = ipaddress.ip_network("198.51.100.0/24")


def https_get(stack: Stack, nginx_ip: str, path: str, *args: str) -> tuple[int, dict[str, str], str]:
    """(status, lower-case headers, body) of one HTTPS request from the client container to nginx."""
    result = curl(
        stack, "-k", "-i", "--resolve", f"{DOMAIN}:443:{nginx_ip}", "-H", f"Host: {stack.public_host}",
        *args, f"https://{DOMAIN}{path}",
    )  # fmt: skip
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def authentik_saw(stack: Stack, marker: str) -> list[dict[str, Any]]:
    """authentik's access-log entries (the stand-in logs like authentik) whose path contains marker."""
    return [e for e in json_log(stack, "server") if marker in str(e.get("event", ""))]


# --------------------------------------------------------------------------- web_path=/auth/


@pytest.fixture(scope="module")
def path_stack(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """The whole stack with web_path=/auth/, up until nginx serves pebble's certificate."""
    with running_stack(tmp_path_factory.mktemp("webpath"), standin_images, {"web_path": "/auth/"}) as stack:
        stack.up()
        wait_for(
            lambda: common_name(served_certificate(stack).issuer).startswith("Pebble"),
            "nginx to serve a certificate from pebble",
            timeout=180,
            context=lambda: stack.logs("certbot")[-3000:],
            interval=1,
        )
        yield stack


def test_web_path_certificate_comes_through_the_acme_challenge(path_stack: Stack) -> None:
    """The certificate flow does not depend on the path: pebble validated http://DOMAIN/.well-known/..."""
    stack = path_stack
    assert "Added order" in stack.logs("pebble")
    nginx_ip = stack.nginx_address("client")
    token, content = unique_name("tok"), unique_name("content")
    challenge_dir = "/var/www/acme/.well-known/acme-challenge"
    stack.exec("certbot", "sh", "-c", f"mkdir -p {challenge_dir} && echo {content} > {challenge_dir}/{token}")
    result = curl(
        stack, "--resolve", f"{DOMAIN}:80:{nginx_ip}", f"http://{DOMAIN}/.well-known/acme-challenge/{token}"
    )
    assert result.stdout == f"{content}\n", result.stdout


def test_web_path_leads_to_the_login_flow(path_stack: Stack) -> None:
    """GET /auth/ follows authentik's redirects, all under /auth/, to the login flow's page."""
    stack = path_stack
    nginx_ip = stack.nginx_address("client")

    def login_page() -> str:
        result = curl(
            stack, "-k", "-L", "--max-redirs", "5", "--resolve", f"{DOMAIN}:443:{nginx_ip}",
            "-H", f"Host: {stack.public_host}", "-w", "\n%{http_code} %{url_effective}",
            f"https://{DOMAIN}/auth/",
        )  # fmt: skip
        return result.stdout

    # authentik may still be starting: 502 from nginx until it answers.
    out = wait_for(
        lambda: (o := login_page()).rpartition("\n")[2].startswith("200 ") and o, "the login flow at /auth/"
    )
    body, _, last = out.rpartition("\n")
    status, url = last.split(" ", 1)
    assert status == "200", out
    assert url.startswith(f"https://{DOMAIN}/auth/if/flow/default-authentication-flow/"), url
    assert "<ak-flow-executor" in body, body

    # Relative: the browser stays on the address and port it used (issue 12).
    status, headers, _ = https_get(stack, nginx_ip, "/auth?x=1")
    assert (status, headers.get("location")) == (301, "/auth/?x=1")

    # Under the path, authentik gets the path unchanged and sees the client and the scheme.
    client_ip = stack.client_address()
    status, _, body = https_get(stack, nginx_ip, "/auth/api/v3/core/users/me/?probe=1")
    seen = json.loads(body)
    assert status == 200 and seen["path"] == "/auth/api/v3/core/users/me/?probe=1", seen
    assert (seen["client_ip"], seen["scheme"], seen["host"]) == (client_ip, "https", stack.public_host)


def test_websocket_under_the_web_path(path_stack: Stack) -> None:
    stack = path_stack
    nginx_ip = stack.nginx_address("client")
    stack.client("sh", "-c", f"grep -q ' {DOMAIN}$' /etc/hosts || echo '{nginx_ip} {DOMAIN}' >> /etc/hosts")
    result = run_client_script(stack, WSCLIENT.read_text(), f"wss://{DOMAIN}/auth/ws/client/", "--insecure")
    assert result.returncode == 0, f"WebSocket under /auth/ failed: {result.stdout}{result.stderr}"
    verdict = json.loads(result.stdout)
    assert verdict == {"status": 101, "text": True, "binary": True, "pong": True, "close": True}, verdict


def test_outside_the_web_path_nothing_reaches_authentik(path_stack: Stack) -> None:
    """/, /if/flow/... and /api/v3/... at the root are the user's (404 from nginx), never authentik's."""
    stack = path_stack
    nginx_ip = stack.nginx_address("client")
    marker = unique_name("outside")
    for path in ("/", f"/?{marker}", f"/if/flow/default-authentication-flow/?{marker}", f"/api/v3/{marker}/",
                 f"/ws/client/?{marker}", f"/outpost.goauthentik.io/{marker}"):  # fmt: skip
        status, headers, body = https_get(stack, nginx_ip, path)
        assert status == 404, f"{path}: {status} {body[:200]}"
        assert "nginx" in body and "location" not in headers, (
            f"{path} was not answered by nginx: {body[:200]}"
        )
    # The user's file answers the root: change it, reload, and the root is the user's site.
    site_root = stack.dir / "nginx" / "custom" / "site-root.conf"
    original = site_root.read_text()
    site_root.write_text(original.replace("return 404;", 'return 200 "my own site\\n";'))
    try:
        stack.exec("nginx", "nginx", "-s", "reload")
        wait_for(lambda: https_get(stack, nginx_ip, "/")[2] == "my own site\n", "the user's root site")
    finally:
        site_root.write_text(original)
        stack.exec("nginx", "nginx", "-s", "reload")
    sentinel = unique_name("inside")
    https_get(stack, nginx_ip, f"/auth/api/v3/{sentinel}/")  # sent last, and it does reach authentik
    logged = json_log_through(stack, "server", sentinel)
    assert [e for e in logged if marker in str(e.get("event", ""))] == [], (
        "a request outside /auth/ reached authentik"
    )
    assert authentik_saw(stack, "/auth/api/v3/core/users/me/"), "authentik's access log shows nothing at all"


# --------------------------------------------------------------------------- a proxy in front of nginx

FRONT_CONF = """
# A load balancer in front of the stack's nginx (test only).
server {
    listen 80;
    resolver 127.0.0.11 valid=5s ipv6=off;
    set $origin nginx;
    location / {
        proxy_pass https://$origin:443;
        proxy_ssl_server_name on;
        proxy_ssl_name %(domain)s;
        proxy_ssl_verify off;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        %(extra)s
    }
}
"""


@dataclass
class Chain:
    """A stack, a front proxy on the `edge` network in front of its nginx, and their addresses."""

    stack: Stack
    front: str
    front_ip: str
    edge: str

    def via_front(self, path: str, *headers: str, host: str | None = None, post: str | None = None) -> Any:
        """authentik's answer to a request through the front proxy (a POST when `post` is given)."""
        args = []
        for header in (f"Host: {host or self.stack.public_host}", *headers):
            args += ["-H", header]
        if post is not None:
            args += ["--data-binary", post, "-H", "Content-Type: application/json"]
        result = curl(self.stack, *args, f"http://{self.front}{path}")
        return json.loads(result.stdout)

    def direct(self, path: str, *headers: str) -> dict[str, Any]:
        nginx_ip = self.stack.nginx_address("client")
        args = []
        for header in headers:
            args += ["-H", header]
        _, _, body = https_get(self.stack, nginx_ip, path, *args)
        return json.loads(body)


def create_network_in(parent: ipaddress.IPv4Network, name: str) -> None:
    """A bridge network on a free /28 of `parent`: tests running in parallel may hold other /28s."""
    candidates = list(parent.subnets(new_prefix=28))
    random.shuffle(candidates)
    errors = []
    for subnet in candidates:
        result = docker_cli("network", "create", "--subnet", str(subnet), name, check=False)
        if result.returncode == 0:
            return
        errors.append(result.stderr.strip())
        if "overlap" not in result.stderr:
            break
    raise AssertionError(f"no network in {parent} for {name}: {errors[-1]}")


@contextlib.contextmanager
def chain(tmp_path: Path, images: Any, *, cloudflare: bool) -> Iterator[Chain]:
    """Front proxy first (its address goes into upstream_proxies), then the stack with nginx on `edge`."""
    edge = unique_name("edge")
    front = f"{edge}-front"
    conf = tmp_path / "front.conf"
    extra = "proxy_set_header CF-Connecting-IP $remote_addr;" if cloudflare else ""
    conf.write_text(FRONT_CONF % {"domain": DOMAIN, "extra": extra})
    conf.chmod(0o644)
    try:
        if cloudflare:
            create_network_in(TEST_CLOUDFLARE_RANGE, edge)
        else:
            docker_cli("network", "create", edge)
        docker_cli(
            "run", "-d", "--name", front, "--network", edge,
            "-v", f"{conf}:/etc/nginx/conf.d/default.conf:ro", images.nginx,
        )  # fmt: skip
        front_ip = json.loads(docker_cli("inspect", front).stdout)[0]["NetworkSettings"]["Networks"][edge][
            "IPAddress"
        ]
        answer = "cloudflare" if cloudflare else front_ip
        # The proxy in front serves the public URL on port 443; nginx publishes a high port.
        data = {"upstream_proxies": answer, "public_url": f"https://{DOMAIN}"}
        with running_stack(tmp_path, images, data) as stack:
            override_path = stack.dir / OVERRIDE
            override = json.loads(override_path.read_text())
            override["services"]["nginx"]["networks"]["edge"] = {}
            override["networks"]["edge"] = {"external": True, "name": edge}
            override_path.write_text(json.dumps(override, indent=2))
            if cloudflare:
                shutil.copyfile(TEST_CLOUDFLARE_RANGES, stack.dir / "nginx/snippets/cloudflare-ranges.conf")
            try:
                stack.up("nginx")
                docker_cli("network", "connect", stack.network_name("client"), front)
                result = Chain(stack, front, front_ip, edge)
                wait_for(
                    lambda: result.via_front("/warm-up")["client_ip"], "an answer through the front proxy"
                )
                yield result
            finally:
                # Off the stack's networks before `compose down`, which cannot remove a network in use.
                docker_cli("rm", "-f", front, check=False)
    finally:
        docker_cli("rm", "-f", front, check=False)
        docker_cli("network", "rm", edge, check=False)


def test_chain_authentik_sees_the_original_client(tmp_path: Path, standin_images) -> None:
    """upstream_proxies=<the front proxy's address>: through it, authentik sees the client; a client
    that forges the headers, straight to nginx or from the front proxy's own network, is seen as itself."""
    with chain(tmp_path, standin_images, cloudflare=False) as ch:
        stack = ch.stack
        real_ip = (stack.dir / "nginx" / "snippets" / "real-ip.conf").read_text()
        assert f"set_real_ip_from {ch.front_ip};" in real_ip, real_ip
        client_ip = stack.client_address()

        seen = ch.via_front("/through-front")
        assert seen["client_ip"] == client_ip, (
            f"authentik sees {seen['client_ip']}, not the client {client_ip}"
        )
        assert seen["trusted_peer"] is True, seen
        assert seen["headers"]["x-forwarded-for"] == client_ip, seen["headers"]
        # The client's own X-Forwarded-For reaches the front proxy, which appends to it: nginx takes
        # the right-most address that is not a trusted proxy, so the forged entry is ignored.
        seen = ch.via_front("/through-front-forged", f"X-Forwarded-For: {FORGED}")
        assert seen["client_ip"] == client_ip, seen

        # Issue 12: the front proxy's Host (the public URL's, no port) reaches authentik unchanged,
        # and the browser's login POST from that origin passes authentik's CSRF check.
        seen = ch.via_front("/through-front-public-host", host=DOMAIN)
        assert (seen["host"], seen["scheme"]) == (DOMAIN, "https"), seen
        flow = ch.via_front(LOGIN, f"Origin: https://{DOMAIN}", host=DOMAIN, post=LOGIN_BODY)
        assert flow == {"component": "xak-flow-redirect", "to": "/if/user/"}, flow
        refused = ch.via_front(
            LOGIN, f"Origin: https://{DOMAIN}:{stack.https_port}", host=DOMAIN, post=LOGIN_BODY
        )
        assert "Origin checking failed" in refused["detail"], refused

        for headers in ((f"X-Forwarded-For: {FORGED}",), (f"CF-Connecting-IP: {FORGED}",),
                        (f"X-Real-IP: {FORGED}", f"Forwarded: for={FORGED}")):  # fmt: skip
            seen = ch.direct("/straight-to-nginx", *headers)
            assert seen["client_ip"] == client_ip, f"{headers}: authentik sees {seen['client_ip']}"

        # Another container on the front proxy's network, but not the listed address: not trusted.
        nginx_edge_ip = stack.inspect("nginx")["NetworkSettings"]["Networks"][ch.edge]["IPAddress"]
        neighbour = docker_cli(
            "run", "--rm", "--network", ch.edge, "--entrypoint", "curl", stack.images.client,
            "-sS", "-k", "--max-time", "10", "-H", f"X-Forwarded-For: {FORGED}",
            "--resolve", f"{DOMAIN}:443:{nginx_edge_ip}", f"https://{DOMAIN}/from-the-edge-network",
        )  # fmt: skip
        seen = json.loads(neighbour.stdout)
        assert seen["client_ip"] not in (FORGED, ch.front_ip, client_ip), seen


def test_chain_cloudflare_takes_cf_connecting_ip_from_cloudflare_only(tmp_path: Path, standin_images) -> None:
    """upstream_proxies=cloudflare: from a Cloudflare address, CF-Connecting-IP names the client;
    from anywhere else, neither CF-Connecting-IP nor X-Forwarded-For is believed."""
    with chain(tmp_path, standin_images, cloudflare=True) as ch:
        stack = ch.stack
        real_ip = (stack.dir / "nginx" / "snippets" / "real-ip.conf").read_text()
        assert "real_ip_header CF-Connecting-IP;" in real_ip, real_ip
        assert ipaddress.ip_address(ch.front_ip) in TEST_CLOUDFLARE_RANGE, ch.front_ip
        client_ip = stack.client_address()
        seen = ch.via_front(
            "/through-cloudflare", f"CF-Connecting-IP: {FORGED}", f"X-Forwarded-For: {FORGED}"
        )
        assert seen["client_ip"] == client_ip, (
            f"authentik sees {seen['client_ip']}, not the client {client_ip}"
        )
        for headers in ((f"CF-Connecting-IP: {FORGED}",), (f"X-Forwarded-For: {FORGED}",)):
            seen = ch.direct("/straight-to-nginx", *headers)
            assert seen["client_ip"] == client_ip, f"{headers}: authentik sees {seen['client_ip']}"


def test_doctor_on_the_web_path_stack(path_stack: Stack) -> None:
    """doctor finds authentik's login flow and the WebSocket under /auth/; forged headers do not count."""
    doctor = Doctor(path_stack.dir, "--offline", secrets=secrets_of(path_stack))
    for check_id in ("stack.login-flow", "stack.websocket", "proxy.real-ip", "stack.client-address"):
        assert doctor.status(check_id) == "ok", doctor
    assert "/auth/if/flow/" in doctor.checks["stack.login-flow"]["message"], doctor
    assert "/auth/ws/client/" in doctor.checks["stack.websocket"]["message"], doctor


def test_doctor_catches_a_range_added_to_the_trusted_proxies(tmp_path: Path, standin_images) -> None:
    """A chain stack passes doctor; `set_real_ip_from 0.0.0.0/0` added by hand fails both the static
    and the live check, which sees a forged address accepted from this machine."""
    with chain(tmp_path, standin_images, cloudflare=False) as ch:
        stack = ch.stack
        doctor = Doctor(stack.dir, "--offline", secrets=secrets_of(stack))
        assert doctor.status("proxy.real-ip") == "ok", doctor
        assert doctor.status("stack.client-address") == "ok", doctor
        assert doctor.status("stack.login-flow") == "ok", doctor

        real_ip = stack.dir / "nginx" / "snippets" / "real-ip.conf"
        original = real_ip.read_text()
        real_ip.write_text(
            original.replace("real_ip_header", "set_real_ip_from 0.0.0.0/0;\nreal_ip_header", 1)
        )
        try:
            stack.exec("nginx", "nginx", "-s", "reload")
            time.sleep(1)
            doctor = Doctor(stack.dir, "--offline", secrets=secrets_of(stack))
            assert doctor.code == 1, doctor
            assert doctor.status("proxy.real-ip") == "fail", doctor
            assert "0.0.0.0/0" in doctor.checks["proxy.real-ip"]["message"], doctor
            assert doctor.status("stack.client-address") == "fail", doctor
            assert FORGED in doctor.checks["stack.client-address"]["message"], doctor
        finally:
            real_ip.write_text(original)
            stack.exec("nginx", "nginx", "-s", "reload")
