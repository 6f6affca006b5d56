"""Issue 5, end to end: ONE freshly generated stack on the real daemon, checked from the outside.

The module brings the stack up once (module-scoped fixture) and the tests run against it in file
order: start-up and certificates, HTTP and ACME on port 80, what authentik sees through nginx,
spoofed headers, WebSockets and upstream keepalive, network isolation (the Docker host is no trusted
proxy), a forced renewal under load, a certbot restart, a certificate nginx cannot load (placeholder,
then repaired), gixy and sslyze on what nginx actually runs, and last a restart of the whole stack.

Clients run in the stand-in client image, attached only to the test-only `client` network (outside
the trusted proxy subnet); the scripts they run are plain stdlib Python (`python3 -c`), because the
client image has nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from scaffold.dockerapi import DockerNetwork
from scaffold.subnets import gateway_of, trusted_ranges
from tests.helpers.browser import login, walk
from tests.helpers.clients import (
    CERT_CHECK_SECONDS,
    DEPLOY_HOOK,
    LOAD_LOOP,
    PLACEHOLDER_CN,
    PLACEHOLDER_WITHIN_S,
    SERVICES,
    START_PROBE,
    TCP_PROBE,
    WSCLIENT,
    cert_from_der64,
    common_name,
    curl,
    describe,
    docker_time,
    in_any,
    json_log,
    nginx_master_pid,
    nginx_state,
    pebble_orders,
    run_client_script,
    served_certificate,
    signed_by,
    trusted_networks,
    upstream_sockets,
)
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, Stack, running_stack, unique_name
from tests.helpers.stack import docker as docker_cli

pytestmark = pytest.mark.docker

# --------------------------------------------------------------------------- the one stack


@dataclass
class Bringup:
    """What was observed while the stack came up."""

    stack: Stack
    nginx_started_at: float
    nginx_started_at_raw: str
    pid_at_start: int
    pid_read_at: float
    probe: dict[str, Any]
    up_seconds: float

    @property
    def public_host(self) -> str:
        return self.stack.public_host

    @property
    def expected_upstream_host(self) -> str:
        """template/nginx/snippets/proxy-authentik.conf.jinja: the Host as the browser sent it."""
        return self.public_host


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Bringup]:
    """`docker compose up` of a freshly generated project, watched from a client from the first second.

    `up --no-start` first creates the networks and containers without starting anything, so the
    client container can already sit on the `client` network and poll nginx by name when the real
    `up -d` starts the stack.
    """
    with running_stack(tmp_path_factory.mktemp("e2e"), standin_images) as stack:
        stack.compose("up", "--no-start")
        client = stack.start_client()
        probe = subprocess.Popen(
            ["docker", "exec", client, "python3", "-c", START_PROBE, "nginx", DOMAIN, "180"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            started = time.monotonic()
            stack.up()
            up_seconds = time.monotonic() - started
            pid = None
            deadline = time.monotonic() + 30
            while pid is None and time.monotonic() < deadline:
                with contextlib.suppress(AssertionError, ValueError):
                    pid = nginx_master_pid(stack)
                if pid is None:
                    time.sleep(0.2)
            pid_read_at = time.time()
            assert pid is not None, f"nginx wrote no pid file within 30 s:\n{stack.logs('nginx')}"
            out, err = probe.communicate(timeout=200)
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
        assert probe.returncode == 0, f"start-up probe failed ({probe.returncode}): {err}"
        started_raw = stack.inspect("nginx")["State"]["StartedAt"]
        yield Bringup(
            stack=stack,
            nginx_started_at=docker_time(started_raw),
            nginx_started_at_raw=started_raw,
            pid_at_start=pid,
            pid_read_at=pid_read_at,
            probe=json.loads(out),
            up_seconds=up_seconds,
        )


@pytest.fixture(scope="module")
def stack(e2e: Bringup) -> Stack:
    return e2e.stack


@pytest.fixture(scope="module")
def nginx_ip(stack: Stack) -> str:
    return stack.nginx_address("client")


@pytest.fixture(scope="module")
def client_ip(stack: Stack) -> str:
    return stack.client_address()


def echo(stack: Stack, nginx_ip: str, path: str, *headers: str, host: str | None = None) -> dict[str, Any]:
    """GET through nginx over HTTPS (SNI = the domain) and return the authentik stand-in's echo."""
    args = ["-k", "--resolve", f"{DOMAIN}:443:{nginx_ip}"]
    if host is not None:
        args += ["-H", f"Host: {host}"]
    for header in headers:
        args += ["-H", header]
    result = curl(stack, *args, f"https://{DOMAIN}{path}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no echo from authentik through nginx for {path}: {result.stdout!r}") from None


# --------------------------------------------------------------------------- 1. start-up


def test_placeholder_https_within_seconds_of_nginx_start(e2e: Bringup) -> None:
    seen = e2e.probe["seen"]
    assert seen, f"nginx never answered HTTPS from the client network: {e2e.probe}"
    first = cert_from_der64(seen[0]["der"])
    assert common_name(first.subject) == PLACEHOLDER_CN, (
        f"the first certificate nginx served is not the placeholder: {describe(first)}"
    )
    assert seen[0]["status"].startswith("HTTP/1.1 "), f"no HTTP answer over the first TLS session: {seen[0]}"
    delay = seen[0]["t"] - e2e.nginx_started_at
    print(
        f"\n[e2e] up -d took {e2e.up_seconds:.1f} s; first HTTPS answer (placeholder, "
        f"{seen[0]['status']!r}) {delay:.2f} s after nginx's container start"
    )
    assert -0.5 < delay <= PLACEHOLDER_WITHIN_S, (
        f"nginx answered HTTPS {delay:.2f} s after its container started "
        f"({e2e.nginx_started_at_raw}); expected within {PLACEHOLDER_WITHIN_S} s"
    )


def test_pebble_certificate_replaces_placeholder_without_restart(e2e: Bringup) -> None:
    stack = e2e.stack
    seen = e2e.probe["seen"]
    assert len(seen) >= 2, (
        f"nginx kept serving one certificate for 180 s: {e2e.probe}\n{stack.logs('certbot')[-3000:]}"
    )
    issued = cert_from_der64(seen[1]["der"])
    print(
        f"\n[e2e] issued certificate served {seen[1]['t'] - e2e.nginx_started_at:.2f} s after nginx's start"
    )
    assert common_name(issued.subject) != PLACEHOLDER_CN, describe(issued)
    assert common_name(issued.issuer).startswith("Pebble Intermediate CA"), (
        f"the second certificate is not issued by pebble's intermediate: {describe(issued)}"
    )
    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [DOMAIN], describe(issued)
    # The chain on disk is certbot's lineage, its intermediate really signed the leaf.
    live = stack.dir / "letsencrypt" / "live" / DOMAIN
    on_disk = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert on_disk[0] == issued, "nginx serves another certificate than certbot's lineage"
    assert signed_by(issued, on_disk[1]), f"leaf not signed by {describe(on_disk[1])}"
    # Loaded by a reload: same container start, same master process, no restart.
    assert e2e.pid_read_at < seen[1]["t"], "the master PID was read only after the certificate change"
    started_at, restarts, pid = nginx_state(stack)
    assert started_at == e2e.nginx_started_at_raw, f"nginx's container restarted: {started_at}"
    assert restarts == 0, f"nginx's RestartCount is {restarts}"
    assert pid == e2e.pid_at_start, f"nginx's master PID changed {e2e.pid_at_start} -> {pid}: restarted"
    assert "nginx reloaded" in stack.logs("nginx"), "the watcher logged no reload"


def test_every_service_becomes_healthy(stack: Stack) -> None:
    started = time.monotonic()
    stack.wait_healthy(SERVICES, timeout=180)
    print(f"\n[e2e] all of {', '.join(SERVICES)} healthy (waited {time.monotonic() - started:.1f} s more)")


# --------------------------------------------------------------------------- 2. port 80 and default servers


def test_http_redirects_to_https_keeping_path_and_query(e2e: Bringup, nginx_ip: str) -> None:
    stack = e2e.stack
    path = "/if/flow/initial-setup/?next=%2Fadmin%2F&x=1"
    result = curl(
        stack, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
        "--resolve", f"{DOMAIN}:80:{nginx_ip}", f"http://{DOMAIN}{path}",
    )  # fmt: skip
    assert result.stdout == f"301 https://{e2e.public_host}{path}", result.stdout


def test_acme_challenge_is_served_on_port_80(stack: Stack, nginx_ip: str) -> None:
    token = f"e2e-{unique_name('t')}"
    content = f"challenge-{unique_name('c')}"
    challenge_dir = "/var/www/acme/.well-known/acme-challenge"
    stack.exec("certbot", "sh", "-c", f"mkdir -p {challenge_dir} && echo {content} > {challenge_dir}/{token}")
    try:
        url = f"http://{DOMAIN}/.well-known/acme-challenge/{token}"
        result = curl(stack, "-i", "--resolve", f"{DOMAIN}:80:{nginx_ip}", url)
        head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
        assert head.startswith("HTTP/1.1 200"), result.stdout
        assert body == f"{content}\n", f"challenge content not served as written: {result.stdout!r}"
        assert "content-type: text/plain" in head.lower(), head
        missing = curl(
            stack,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            f"{DOMAIN}:80:{nginx_ip}",
            url + "-missing",
        )
        assert missing.stdout == "404", f"a missing token must be a 404, got {missing.stdout}"
    finally:
        stack.exec("certbot", "rm", "-f", f"{challenge_dir}/{token}", check=False)


def test_unknown_host_on_port_80_gets_no_answer(stack: Stack, nginx_ip: str) -> None:
    for host in ("unknown.example.test", nginx_ip):
        result = curl(stack, "-v", "-H", f"Host: {host}", f"http://{nginx_ip}/", check=False)
        # curl exit 52: "Empty reply from server" - nginx's 444 closes the connection.
        assert result.returncode == 52, (
            f"Host {host!r} on port 80: expected the connection closed without an answer (curl exit 52), "
            f"got exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )


def test_known_sni_with_another_host_on_port_443_is_refused(stack: Stack, nginx_ip: str) -> None:
    """Issue 13 item 11: SNI = the domain, `Host: evil.test`: 421 from the default server, never its
    welcome page, never authentik; over HTTP/1.1 and HTTP/2."""
    for version in ("--http1.1", "--http2"):
        result = curl(
            stack, "-k", version, "--resolve", f"{DOMAIN}:443:{nginx_ip}", "-H", "Host: evil.test",
            "-w", "\n%{http_code}", f"https://{DOMAIN}/", check=False,
        )  # fmt: skip
        body, _, status = result.stdout.rpartition("\n")
        assert status == "421", f"{version}: {result.stdout}{result.stderr}"
        assert "Welcome to nginx" not in body and '"host"' not in body, body


def test_unknown_sni_on_port_443_is_rejected(stack: Stack, nginx_ip: str) -> None:
    for sni_args in (["-servername", "unknown.example.test"], ["-noservername"]):
        result = stack.client(
            "sh", "-c",
            f"echo | openssl s_client -connect {nginx_ip}:443 {' '.join(sni_args)} 2>&1",
            check=False,
        )  # fmt: skip
        assert "unrecognized name" in result.stdout, f"{sni_args}: handshake not rejected:\n{result.stdout}"
        assert "no peer certificate available" in result.stdout, (
            f"{sni_args}: a certificate was presented for an unknown name:\n{result.stdout}"
        )
    result = curl(
        stack,
        "-k",
        "--resolve",
        f"other.example.test:443:{nginx_ip}",
        "https://other.example.test/",
        check=False,
    )
    assert result.returncode == 35, (
        f"curl to an unknown name: expected TLS failure (35), got {result.returncode}"
    )


# --------------------------------------------------------------------------- 3./4. what authentik sees


def test_authentik_sees_client_host_scheme_and_trusted_proxy(
    e2e: Bringup, nginx_ip: str, client_ip: str
) -> None:
    stack = e2e.stack
    seen = echo(stack, nginx_ip, "/api/v3/root/config/?probe=1", host=e2e.public_host)
    assert seen["host"] == e2e.expected_upstream_host, f"authentik sees Host {seen['host']!r}: {seen}"
    assert seen["headers"].get("x-forwarded-host") == e2e.expected_upstream_host, seen["headers"]
    assert seen["scheme"] == "https", f"authentik sees scheme {seen['scheme']!r}: {seen}"
    assert seen["client_ip"] == client_ip, f"authentik sees client {seen['client_ip']!r}, not {client_ip}"
    assert seen["trusted_peer"] is True, (
        f"nginx ({seen['peer']}) is not a trusted proxy for authentik: {seen}"
    )
    assert seen["path"] == "/api/v3/root/config/?probe=1", seen
    assert not in_any(client_ip, trusted_networks(stack)), "the client must be outside the trusted subnet"
    # A browser that leaves the port out (a router forwards port 443 here) is passed on as it is: the
    # Host must match its Origin, https://DOMAIN (issue 12).
    bare = echo(stack, nginx_ip, "/bare-host")
    assert (bare["host"], bare["headers"].get("x-forwarded-host")) == (DOMAIN, DOMAIN), bare


def test_browser_on_the_published_port_logs_in_and_keeps_the_port(stack: Stack) -> None:
    """Issue 12: Host and Origin `domain:PORT` (the default public_url): the login flow's redirects keep
    the port, and the login POST passes authentik's CSRF check."""
    host = stack.public_host
    hops = wait_for(
        lambda: (h := walk(stack.https_port, host)) and h[-1][1].status == 200 and h, "the login flow"
    )
    assert all(url.startswith(f"https://{host}/") for url, _ in hops), [url for url, _ in hops]
    assert all(":443" not in answer.headers.get("location", "") for _, answer in hops), hops
    answer = login(stack.https_port, host, f"https://{host}")
    assert answer.status == 200, answer
    refused = login(stack.https_port, host, f"https://{DOMAIN}")
    assert refused.status == 403 and b"Origin checking failed" in refused.body, refused


@pytest.mark.parametrize(
    "spoof",
    [
        ["X-Forwarded-For: 203.0.113.7"],
        ["Forwarded: for=198.51.100.9;proto=http"],
        ["X-Forwarded-Proto: http"],
        ["X-Forwarded-For: 203.0.113.7", "X-Real-IP: 203.0.113.8", "X-Forwarded-Proto: http",
         "X-Forwarded-Host: evil.example.test", "Forwarded: for=198.51.100.9;host=evil.example.test"],
    ],
    ids=["x-forwarded-for", "forwarded", "x-forwarded-proto", "all-at-once"],
)  # fmt: skip
def test_client_forwarding_headers_are_not_believed(
    e2e: Bringup, nginx_ip: str, client_ip: str, spoof: list[str]
) -> None:
    seen = echo(e2e.stack, nginx_ip, "/spoof", *spoof, host=e2e.public_host)
    assert seen["client_ip"] == client_ip, f"{spoof} moved the client address to {seen['client_ip']!r}"
    assert seen["scheme"] == "https", f"{spoof} changed the scheme to {seen['scheme']!r}"
    assert seen["host"] == e2e.expected_upstream_host, f"{spoof} changed the host to {seen['host']!r}"
    headers = seen["headers"]
    assert headers.get("x-forwarded-for") == client_ip, f"X-Forwarded-For not replaced: {headers}"
    assert "forwarded" not in headers, f"the client's Forwarded header reached authentik: {headers}"
    assert headers.get("x-forwarded-proto") == "https", headers


# --------------------------------------------------------------------------- 5. WebSocket and keepalive


def test_websocket_upgrades_and_echoes(stack: Stack, nginx_ip: str, client_ip: str) -> None:
    # wsclient.py connects to the URL's host name and sends it as SNI: resolve the domain to nginx.
    stack.client("sh", "-c", f"grep -q ' {DOMAIN}$' /etc/hosts || echo '{nginx_ip} {DOMAIN}' >> /etc/hosts")
    result = run_client_script(stack, WSCLIENT.read_text(), f"wss://{DOMAIN}/ws/client/", "--insecure")
    assert result.returncode == 0, f"WebSocket through nginx failed: {result.stdout}{result.stderr}"
    verdict = json.loads(result.stdout)
    assert verdict == {"status": 101, "text": True, "binary": True, "pong": True, "close": True}, verdict
    # authentik logged the upgrade with the client's real address (its access log is flushed in batches).
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        entries = [e for e in json_log(stack, "server") if e.get("event") == "/ws/client/"]
        if entries:
            break
        time.sleep(0.3)
    assert any(e["status"] == 101 and e["remote"] == client_ip and e["scheme"] == "https" for e in entries), (
        f"authentik logged no upgrade from {client_ip} over https: {entries}"
    )


def test_plain_requests_reuse_upstream_connections(stack: Stack, nginx_ip: str) -> None:
    """The echo's `peer` has no port, so the upstream connections are counted in nginx's namespace."""
    before = upstream_sockets(stack, 9443)
    # One curl, ten URLs: one client connection (HTTP/2), so one nginx worker serves all ten.
    urls = [arg for n in range(10) for arg in ("-o", "/dev/null", f"https://{DOMAIN}/keepalive/{n}")]
    result = curl(
        stack, "-k", "--resolve", f"{DOMAIN}:443:{nginx_ip}", "-w", "%{http_code} %{num_connects}\n", *urls
    )
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["200"] * 10, result.stdout
    assert sum(int(r[1]) for r in rows) == 1, f"curl did not use one client connection: {result.stdout}"
    after = upstream_sockets(stack, 9443)
    new = {port: state for port, state in after.items() if port not in before}
    assert len(new) <= 1, f"10 requests opened {len(new)} upstream connections (no keepalive): {new}"
    assert "01" in after.values(), f"no idle keepalive connection to authentik after the requests: {after}"


# --------------------------------------------------------------------------- 6. networks


def test_proxy_network_is_trusted_and_backend_is_isolated(stack: Stack, client_ip: str) -> None:
    env = stack.env()
    cidrs = trusted_networks(stack)
    assert cidrs, f"AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS is empty in .env: {env}"
    proxy = stack.network_name("proxy")
    backend = stack.network_name("backend")
    nginx_on_proxy = stack.nginx_address("proxy")
    assert in_any(nginx_on_proxy, cidrs), f"nginx's proxy address {nginx_on_proxy} is outside {cidrs}"
    network = proxy_network(stack)
    subnets = [str(s) for s in network.subnets]
    assert env.get("PROXY_SUBNET") in subnets, f".env PROXY_SUBNET={env.get('PROXY_SUBNET')} vs {subnets}"
    expected = trusted_ranges(network.subnets, network.gateways)
    assert cidrs == expected, f"trusted CIDRs {cidrs} are not the proxy subnets {subnets} without gateways"

    server = stack.inspect("server")
    assert proxy in server["NetworkSettings"]["Networks"], f"server is not on {proxy}"
    server_env = dict(item.split("=", 1) for item in server["Config"]["Env"])
    assert (
        server_env.get("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS")
        == env["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"]
    )
    nginx_networks = set(stack.inspect("nginx")["NetworkSettings"]["Networks"])
    assert backend not in nginx_networks, f"nginx is on the backend network: {nginx_networks}"

    postgres = stack.inspect("postgresql")
    assert set(postgres["NetworkSettings"]["Networks"]) == {backend}, postgres["NetworkSettings"]["Networks"]
    pg_ip = postgres["NetworkSettings"]["Networks"][backend]["IPAddress"]

    def probe_from(service: str) -> dict[str, Any]:
        name = f"{stack.project}-probe-{unique_name('n')}"
        try:
            result = docker_cli(
                "run", "--rm", "--name", name, "--network", f"container:{stack.container_id(service)}",
                "--entrypoint", "python3", stack.images.client, "-c", TCP_PROBE, "postgresql", pg_ip, "5432",
                timeout=60,
            )  # fmt: skip
        finally:
            docker_cli("rm", "-f", name, check=False)
        return json.loads(result.stdout)

    from_nginx = probe_from("nginx")
    assert from_nginx["connected"] is False, f"nginx reaches PostgreSQL at {pg_ip}:5432: {from_nginx}"
    assert "resolves_to" not in from_nginx, f"`postgresql` resolves in nginx's namespace: {from_nginx}"
    from_server = probe_from("server")
    assert from_server["connected"] is True, (
        f"the server cannot reach PostgreSQL at {pg_ip}:5432: {from_server}"
    )
    assert pg_ip in from_server.get("resolves_to", []), from_server


def proxy_network(stack: Stack) -> DockerNetwork:
    """The proxy network as Docker reports it (subnets, and gateways where Docker names them)."""
    return DockerNetwork.from_api(
        json.loads(docker_cli("network", "inspect", stack.network_name("proxy")).stdout)[0]
    )


# From the Docker host's network namespace (`docker run --network host`, as Home Assistant runs):
# a plain HTTP request straight to authentik's address on the proxy network, with forged headers.
HOST_REQUEST = r"""
import json, sys, urllib.request
request = urllib.request.Request(f"http://{sys.argv[1]}:9000/from-the-docker-host", headers={
    "Host": sys.argv[2], "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""


def test_docker_host_is_not_a_trusted_proxy_but_nginx_is(e2e: Bringup, nginx_ip: str, client_ip: str) -> None:
    """The proxy network's gateway is the Docker host: whatever runs there (every `network_mode:
    host` container too) reaches authentik from the gateway address and must not be believed."""
    stack = e2e.stack
    network = proxy_network(stack)
    gateway = str(gateway_of(network.subnets[0], network.gateways))
    server = stack.inspect("server")["NetworkSettings"]["Networks"][stack.network_name("proxy")]
    name = f"{stack.project}-hostnet-{unique_name('h')}"
    try:
        result = docker_cli(
            "run", "--rm", "--name", name, "--network", "host", "--entrypoint", "python3",
            stack.images.client, "-c", HOST_REQUEST, server["IPAddress"], e2e.public_host, timeout=60,
        )  # fmt: skip
    finally:
        docker_cli("rm", "-f", name, check=False)
    seen = json.loads(result.stdout)
    assert seen["peer"] == gateway, f"expected the request from the gateway {gateway}: {seen}"
    assert seen["trusted_peer"] is False, f"authentik trusts the Docker host ({gateway}): {seen}"
    assert seen["client_ip"] == gateway, f"the Docker host chose the client address {seen['client_ip']}"
    assert seen["scheme"] == "http", f"the Docker host chose the scheme {seen['scheme']!r}"
    # nginx, on the same network, is still believed.
    through_nginx = echo(
        stack, nginx_ip, "/through-nginx", "X-Forwarded-For: 203.0.113.7", host=e2e.public_host
    )
    assert through_nginx["trusted_peer"] is True, through_nginx
    assert through_nginx["client_ip"] == client_ip, through_nginx


def test_only_nginx_publishes_host_ports(stack: Stack) -> None:
    services = stack.compose("config", "--services").stdout.split()
    assert set(SERVICES) <= set(services), services
    published: dict[str, dict[str, list[str]]] = {}
    for service in services:
        ports = stack.inspect(service)["NetworkSettings"]["Ports"] or {}
        bound = {k: sorted({b["HostPort"] for b in v}) for k, v in ports.items() if v}
        if bound:
            published[service] = bound
    assert published == {"nginx": {"80/tcp": [str(stack.http_port)], "443/tcp": [str(stack.https_port)]}}, (
        f"published host ports: {published}"
    )


# --------------------------------------------------------------------------- 7./8. renewal and restart


def test_forced_renewal_is_served_without_failed_requests_or_restart(e2e: Bringup, nginx_ip: str) -> None:
    stack = e2e.stack
    old = served_certificate(stack)
    state_before = nginx_state(stack)
    stop = f"/tmp/stop-{unique_name('l')}"
    loop = subprocess.Popen(
        [
            "docker", "exec", stack.start_client(), "python3", "-c", LOAD_LOOP,
            nginx_ip, DOMAIN, e2e.public_host, stop, "90",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        renew_started = time.monotonic()
        renewal = stack.exec(
            "certbot", "certbot", "renew", "--non-interactive", "--force-renewal",
            "--no-random-sleep-on-renew", "--cert-name", DOMAIN, "--deploy-hook", DEPLOY_HOOK,
        )  # fmt: skip
        assert "all renewals succeeded" in renewal.stdout, renewal.stdout
        new = old
        deadline = time.monotonic() + 3 * CERT_CHECK_SECONDS + 10
        while new.serial_number == old.serial_number and time.monotonic() < deadline:
            time.sleep(0.25)
            new = served_certificate(stack)
        swap_seconds = time.monotonic() - renew_started
        time.sleep(2)  # keep requesting a little after the swap
    finally:
        stack.client("touch", stop, check=False)
        try:
            out, err = loop.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            loop.kill()
            out, err = loop.communicate()
    assert new.serial_number != old.serial_number, (
        f"still serving serial {old.serial_number:x} {3 * CERT_CHECK_SECONDS + 10} s after the renewal:\n"
        f"{stack.logs('nginx')[-2000:]}"
    )
    assert common_name(new.issuer).startswith("Pebble Intermediate CA"), describe(new)
    assert loop.returncode == 0, f"load loop crashed: {err}"
    load = json.loads(out)
    serials = sorted((cert_from_der64(c["der"]).serial_number, c["count"]) for c in load["certs"].values())
    print(
        f"\n[e2e] renewal: new serial served {swap_seconds:.1f} s after `certbot renew` started; "
        f"load loop: {load['ok']} ok, {load['failed']} failed in {load['seconds']:.1f} s; "
        f"per serial: {[(f'{s:x}', n) for s, n in serials]}"
    )
    assert load["failed"] == 0, f"{load['failed']} failed requests during the swap: {load['failures']}"
    assert load["ok"] >= 100, f"the load loop made only {load['ok']} requests: not a real test of the swap"
    served = {s for s, _ in serials}
    assert {old.serial_number, new.serial_number} <= served, (
        f"the loop did not span the swap: saw serials {[f'{s:x}' for s in served]}"
    )
    assert nginx_state(stack) == state_before, (
        "nginx restarted (StartedAt, RestartCount or master PID changed)"
    )


RENEW_DONE = re.compile(
    r"No renewals were attempted|renewals succeeded|renewals failed|Successfully received certificate"
    r"|could not get a certificate"
)


def test_certbot_restart_requests_no_new_certificate(stack: Stack) -> None:
    serial = served_certificate(stack).serial_number
    orders = pebble_orders(stack)
    generation = (stack.dir / "letsencrypt" / "scaffold" / "generation").read_text()
    logs_before = stack.logs("certbot")
    done_before = len(RENEW_DONE.findall(logs_before))
    state_before = nginx_state(stack)
    stack.compose("restart", "certbot")
    deadline = time.monotonic() + 60
    logs = logs_before
    while time.monotonic() < deadline:
        logs = stack.logs("certbot")
        if len(RENEW_DONE.findall(logs)) > done_before:
            break
        time.sleep(0.5)
    new_part = logs[len(logs_before) :] if logs.startswith(logs_before) else logs
    assert len(RENEW_DONE.findall(logs)) > done_before, f"certbot's loop did not finish a pass:\n{new_part}"
    assert "No renewals were attempted" in new_part, f"certbot did not skip the renewal:\n{new_part}"
    for word in ("Requesting a certificate", "Renewing an existing certificate"):
        assert word not in new_part, f"certbot asked the CA again after a restart ({word!r}):\n{new_part}"
    assert pebble_orders(stack) == orders, "pebble got a new order after a certbot restart"
    assert (stack.dir / "letsencrypt" / "scaffold" / "generation").read_text() == generation, (
        "certbot signalled nginx after a restart without a new certificate"
    )
    assert served_certificate(stack).serial_number == serial, "the served certificate changed"
    assert nginx_state(stack) == state_before, "nginx restarted"
    stack.wait_healthy(("certbot",), timeout=60)


# --------------------------------------------------------------------------- 8b. a certificate nobody checked


def test_unloadable_certificate_falls_back_to_the_placeholder_and_certbot_repairs_it(stack: Stack) -> None:
    """Garbage in live/<domain>/{fullchain,privkey}.pem (certbot's renewal file stays), `current`
    pointing at it. nginx restarted: it must start with the placeholder and say why, port 80 stays up
    so HTTP-01 works, doctor names the reason; a certbot restart replaces the lineage and nginx
    reloads to the new certificate. (Before: nginx looped on "cannot load certificate".) Runs before the
    whole-stack restart, which restarts pebble too and so forgets certbot's ACME account."""
    from scaffold.doctor import run_doctor
    from tests.helpers.polling import wait_for

    live = stack.dir / "letsencrypt" / "live" / DOMAIN
    assert os.readlink(stack.dir / "letsencrypt" / "scaffold" / "current") == f"../live/{DOMAIN}"
    old_serial = served_certificate(stack).serial_number
    for name in ("fullchain.pem", "privkey.pem"):
        (live / name).write_text("garbage\n")  # through certbot's links, into its archive
    assert (stack.dir / "letsencrypt" / "renewal" / f"{DOMAIN}.conf").exists()
    nginx_logs_before = stack.logs("nginx")

    def context() -> str:
        return stack.compose("logs", "--tail", "40", "nginx", "certbot").stdout

    stack.compose("restart", "nginx")

    def served_placeholder(want: bool) -> x509.Certificate | None:
        cert = served_certificate(stack)
        return cert if (common_name(cert.subject) == PLACEHOLDER_CN) == want else None

    placeholder = wait_for(
        lambda: served_placeholder(True),
        "nginx to serve the placeholder after a restart onto an unloadable certificate",
        timeout=30,
        context=context,
    )
    assert common_name(placeholder.subject) == PLACEHOLDER_CN
    data = stack.inspect("nginx")
    assert data["State"]["Running"] and data["RestartCount"] == 0, data["State"]
    new_logs = stack.logs("nginx")[len(nginx_logs_before) :]
    assert "NOT serving /etc/letsencrypt/scaffold/current" in new_logs, new_logs
    assert "nginx cannot load it (cannot load certificate" in new_logs, new_logs

    # Port 80 answers, so an HTTP-01 challenge can repair it.
    nginx_ip = stack.nginx_address()
    token, content = f"e2e-{unique_name('t')}", f"repair-{unique_name('c')}"
    challenge_dir = "/var/www/acme/.well-known/acme-challenge"
    stack.exec("certbot", "sh", "-c", f"mkdir -p {challenge_dir} && echo {content} > {challenge_dir}/{token}")
    try:
        url = f"http://{DOMAIN}/.well-known/acme-challenge/{token}"
        assert curl(stack, "--resolve", f"{DOMAIN}:80:{nginx_ip}", url).stdout == f"{content}\n"
    finally:
        stack.exec("certbot", "rm", "-f", f"{challenge_dir}/{token}", check=False)

    report = {result.id: result for result in run_doctor(stack.dir).results}
    loadable = report["tls.certificate-loadable"]
    assert loadable.status == "fail", loadable
    assert "nginx cannot load: OpenSSL cannot read the pair" in loadable.message, loadable
    assert "nginx serves the self-signed placeholder instead" in loadable.message, loadable

    certbot_logs_before = stack.logs("certbot")
    stack.compose("restart", "certbot")
    repaired = wait_for(
        lambda: served_placeholder(False),
        "certbot to replace the broken lineage and nginx to reload",
        timeout=90,
        context=context,
    )
    assert common_name(repaired.issuer).startswith("Pebble Intermediate CA"), describe(repaired)
    assert repaired.serial_number != old_serial
    certbot_new = stack.logs("certbot")[len(certbot_logs_before) :]
    assert "is unusable (fullchain.pem holds no certificate that parses): moved it to" in certbot_new
    assert stack.inspect("nginx")["RestartCount"] == 0


# --------------------------------------------------------------------------- 9./10. gixy and sslyze

# Findings that come only from the image's stock /etc/nginx/nginx.conf (main context, not generated
# by this template, not mounted by the stack), by gixy plugin name. Explained in docs/gixy.md.
GIXY_STOCK_FINDINGS = {"worker_rlimit_nofile_vs_connections"}


def dump_file_at(dump: str, line: int) -> str:
    """The file a line of `nginx -T` output comes from (`# configuration file PATH:` headers)."""
    current = ""
    for number, text in enumerate(dump.splitlines(), start=1):
        match = re.match(r"# configuration file (.+):$", text)
        if match:
            current = match.group(1)
        if number >= line:
            break
    return current


def test_gixy_finds_nothing_of_ours(stack: Stack, tmp_path: Path) -> None:
    dump = stack.exec("nginx", "nginx", "-T").stdout
    assert "# configuration file /etc/nginx/conf.d/authentik.conf:" in dump, dump[:500]
    path = tmp_path / "nginx-T.conf"
    path.write_text(dump)
    result = subprocess.run(
        [sys.executable, "-m", "gixy", "-f", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.stdout.strip(), f"gixy printed nothing (exit {result.returncode}): {result.stderr}"
    findings = json.loads(result.stdout)
    relevant, excluded = [], []
    for finding in findings:
        if finding["severity"] not in ("MEDIUM", "HIGH"):
            continue
        source = dump_file_at(dump, int(finding.get("line") or 0))
        entry = f"{finding['severity']} {finding['plugin']} in {source}: {finding['reason']}"
        if finding["plugin"] in GIXY_STOCK_FINDINGS and source == "/etc/nginx/nginx.conf":
            excluded.append(entry)
        else:
            relevant.append(entry)
    print(f"\n[e2e] gixy: {len(findings)} findings; excluded (stock nginx.conf): {excluded}")
    assert not relevant, "gixy findings in the generated configuration:\n" + "\n".join(relevant)
    # The stock file, not ours, sets worker_connections: we must not own what we exclude.
    for conf in (stack.dir / "nginx").rglob("*.conf"):
        assert "worker_connections" not in conf.read_text(), conf


def test_sslyze_mozilla_intermediate_compliant(stack: Stack, tmp_path: Path) -> None:
    """sslyze's Mozilla check includes certificate path validation, which needs a trusted root.

    The certificate is real (issued over ACME by pebble), but pebble's root is made at pebble's
    start and is in no trust store, so it is fetched from pebble's management API and handed to
    sslyze with --certinfo_ca_file. Everything else (protocols, ciphers, curves, key, signature,
    lifespan, vulnerabilities) is checked as for a public site; the hostname is sent as SNI.
    """
    fetch = (
        "import ssl, urllib.request; "
        "ctx = ssl.create_default_context(cafile='/opt/test-ca/pebble-ca.pem'); "
        "answer = urllib.request.urlopen('https://pebble:15000/roots/0', context=ctx, timeout=10); "
        "print(answer.read().decode())"
    )
    root = tmp_path / "pebble-root.pem"
    root.write_text(stack.exec("certbot", "python3", "-c", fetch).stdout)
    report = tmp_path / "sslyze.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", f"--certinfo_ca_file={root}",
            f"--json_out={report}", f"{DOMAIN}:{stack.https_port}{{127.0.0.1}}",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    verdict = result.stdout[result.stdout.find("COMPLIANCE AGAINST") :]
    print(f"\n[e2e] sslyze: {' '.join(verdict.split())}")
    assert result.returncode == 0 and "OK - Compliant" in result.stdout, (
        f"sslyze exit {result.returncode}, not compliant with Mozilla intermediate:\n"
        f"{verdict or result.stdout}"
        f"\n{result.stderr[-2000:]}"
    )
    scan = json.loads(report.read_text())["server_scan_results"][0]["scan_result"]
    curves = {c["name"] for c in scan["elliptic_curves"]["result"]["supported_curves"]}
    assert curves <= {"X25519", "secp256r1", "secp384r1"}, f"extra key exchange groups: {curves}"
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        accepted = scan[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"]
        assert not accepted, f"{old} accepted: {accepted}"
    validations = scan["certificate_info"]["result"]["certificate_deployments"][0]["path_validation_results"]
    assert any(v["was_validation_successful"] and v["trust_store"]["path"] == str(root) for v in validations)


def test_whole_stack_restart_keeps_certificate(stack: Stack) -> None:
    """`docker compose restart` (a host reboot, in effect): nginx comes back with the issued
    certificate at once (no placeholder), and certbot asks the CA for nothing."""
    serial = served_certificate(stack).serial_number
    orders = pebble_orders(stack)
    logs_before = stack.logs("certbot")
    done_before = len(RENEW_DONE.findall(logs_before))
    stack.compose("restart")
    first = None
    deadline = time.monotonic() + 60
    while first is None and time.monotonic() < deadline:
        try:
            first = served_certificate(stack)
        except (OSError, AssertionError):
            time.sleep(0.2)
    assert first is not None, (
        f"nginx did not answer HTTPS within 60 s of a restart:\n{stack.logs('nginx')[-2000:]}"
    )
    assert first.serial_number == serial, f"after a restart nginx first served {describe(first)}"
    deadline = time.monotonic() + 60
    logs = logs_before
    while len(RENEW_DONE.findall(logs)) <= done_before and time.monotonic() < deadline:
        time.sleep(0.5)
        logs = stack.logs("certbot")
    new_part = logs[len(logs_before) :] if logs.startswith(logs_before) else logs
    assert "No renewals were attempted" in new_part, f"certbot did not skip the renewal:\n{new_part}"
    assert pebble_orders(stack) == orders, "pebble got a new order after the stack restarted"
    assert served_certificate(stack).serial_number == serial, "the served certificate changed"
