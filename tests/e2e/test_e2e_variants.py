"""Variants of the generated stack on the real daemon, each brought up only as far as its check needs.

`up nginx` starts nginx with what it depends on (certbot, server, postgresql) and nothing else: the
placeholder certificate is enough to talk HTTPS to nginx, so neither pebble nor the worker is needed,
and nobody waits for authentik's 30-second healthcheck.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import warnings
from pathlib import Path
from typing import Any

import pytest

from scaffold.subnets import trusted_cidrs, trusted_ranges
from tests.helpers.clients import curl, upstream_sockets
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, Stack, running_stack, unique_name
from tests.helpers.stack import docker as docker_cli

pytestmark = pytest.mark.docker


def wait_for_echo(stack: Stack, resolve: str, path: str, *extra: str, timeout: float = 60) -> dict[str, Any]:
    """The authentik stand-in's echo through nginx, once nginx and authentik both answer."""

    def echo() -> dict[str, Any]:
        result = curl(stack, "-k", "--resolve", resolve, *extra, f"https://{DOMAIN}{path}", check=False)
        if result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}: {result.stdout[:300]} {result.stderr[:300]}")
        return json.loads(result.stdout)  # not JSON: a 502 page while authentik starts

    return wait_for(
        echo, "an echo from authentik through nginx", timeout=timeout, context=lambda: stack.logs("nginx")
    )


def test_upstream_http_variant(tmp_path: Path, standin_images) -> None:
    """upstream_scheme=http: nginx talks plain HTTP to authentik's port 9000, and authentik still sees
    https and the real client, because it trusts nginx's X-Forwarded-* headers (its own connection's
    scheme is http here, so a wrong trust setting would show)."""
    with running_stack(tmp_path, standin_images, {"upstream_scheme": "http"}) as stack:
        conf = (stack.dir / "nginx" / "conf.d" / "authentik.conf").read_text()
        assert "server server:9000;" in conf and "proxy_pass http://authentik;" in conf, conf
        stack.up("nginx")
        nginx_ip = stack.nginx_address("client")
        client_ip = stack.client_address()
        host = stack.public_host
        resolve = f"{DOMAIN}:443:{nginx_ip}"
        seen = wait_for_echo(stack, resolve, "/http-upstream?x=1", "-H", f"Host: {host}")
        assert seen["scheme"] == "https", f"authentik sees scheme {seen['scheme']!r} behind an http upstream"
        assert seen["client_ip"] == client_ip, f"authentik sees {seen['client_ip']!r}, not {client_ip}"
        assert seen["trusted_peer"] is True, seen
        assert seen["host"] == host, seen
        spoofed = wait_for_echo(
            stack, resolve, "/spoof", "-H", "X-Forwarded-For: 203.0.113.7", "-H", "X-Forwarded-Proto: http"
        )
        assert (spoofed["client_ip"], spoofed["scheme"]) == (client_ip, "https"), spoofed
        sockets = upstream_sockets(stack, 9000)
        assert "01" in sockets.values(), f"no (keepalive) connection from nginx to authentik:9000: {sockets}"
        assert not upstream_sockets(stack, 9443), "nginx talked to 9443 although upstream_scheme=http"


def ula_subnet() -> str:
    return (
        f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64"
    )


def ipv6_network_problem() -> str | None:
    """Why this daemon cannot create an IPv6 bridge network, or None when it can."""
    name = f"{unique_name('v6probe')}"
    result = docker_cli("network", "create", "--ipv6", "--subnet", ula_subnet(), name, check=False)
    if result.returncode != 0:
        return result.stderr.strip() or result.stdout.strip()
    docker_cli("network", "rm", name, check=False)
    return None


def test_ipv6_variant(tmp_path: Path, standin_images) -> None:
    """enable_ipv6=true: the proxy network is dual-stack and authentik trusts both of its subnets.

    Always checked: .env has both subnets and trusts them without their gateways, `docker compose
    config` gives the proxy network `enable_ipv6: true` with both subnets, nginx listens on [::]:80
    and [::]:443.
    Where the daemon can create IPv6 networks (Debian's docker 20.10 can, for user-defined bridges,
    without `experimental`/ip6tables, which only matter for NAT to the outside), the stack runs:
    nginx and the server get addresses in the IPv6 subnet, nginx reaches authentik over both
    families and is trusted on both, and an IPv6-only-addressed client gets its own IPv6 address
    through to authentik. Where the daemon cannot, only the configuration is checked, and a warning
    in the test summary says so (no silent skip).
    """
    with running_stack(tmp_path, standin_images, {"enable_ipv6": True}) as stack:
        env = stack.env()
        v4, v6 = env.get("PROXY_SUBNET"), env.get("PROXY_SUBNET_V6")
        assert v4 and v6, f".env lacks PROXY_SUBNET / PROXY_SUBNET_V6: {env.keys()}"
        v6_net = ipaddress.ip_network(v6)
        assert v6_net.version == 6 and v6_net.subnet_of(ipaddress.ip_network("fc00::/7")), v6
        cidrs = [c.strip() for c in (env.get("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS") or "").split(",")]
        expected = trusted_cidrs(trusted_ranges([ipaddress.ip_network(v4), v6_net])).split(",")
        assert cidrs == expected, (
            f"trusted CIDRs {cidrs} are not the proxy subnets {v4}, {v6} without gateways"
        )
        config = json.loads(stack.compose("config", "--format", "json").stdout)
        proxy = config["networks"]["proxy"]
        assert proxy.get("enable_ipv6") is True, proxy
        assert [c["subnet"] for c in proxy["ipam"]["config"]] == [v4, v6], proxy
        confs = "\n".join(p.read_text() for p in (stack.dir / "nginx" / "conf.d").glob("*.conf"))
        for listen in ("listen [::]:80 default_server;", "listen [::]:443 ssl default_server;"):
            assert listen in confs, f"missing `{listen}`"
        assert "listen [::]:443 ssl;" in confs and "listen [::]:80;" in confs, confs

        problem = ipv6_network_problem()
        if problem is not None:
            warnings.warn(
                f"this Docker daemon cannot create IPv6 networks ({problem}); "
                "the IPv6 variant was checked as configuration only",
                stacklevel=1,
            )
            return

        stack.up("nginx")
        nginx_proxy = stack.inspect("nginx")["NetworkSettings"]["Networks"][stack.network_name("proxy")]
        server_proxy = stack.inspect("server")["NetworkSettings"]["Networks"][stack.network_name("proxy")]
        for who, net in (("nginx", nginx_proxy), ("server", server_proxy)):
            assert net["GlobalIPv6Address"], f"{who} has no IPv6 address on the proxy network: {net}"
            assert ipaddress.ip_address(net["GlobalIPv6Address"]) in v6_net, (who, net)

        # IPv4 client; nginx reaches authentik over both families (Docker's DNS gives A and AAAA
        # records for `server`; nginx round-robins between them): every request must be trusted.
        nginx_ip = stack.nginx_address("client")
        client_ip = stack.client_address()
        resolve = f"{DOMAIN}:443:{nginx_ip}"
        wait_for_echo(stack, resolve, "/warm-up")
        urls = [f"https://{DOMAIN}/dual-stack/{n}" for n in range(8)]
        result = curl(stack, "-k", "--resolve", resolve, "-w", "\n", *urls)
        echoes = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert len(echoes) == 8, result.stdout
        peers = {e["peer"] for e in echoes}
        assert all(
            e["trusted_peer"] and e["client_ip"] == client_ip and e["scheme"] == "https" for e in echoes
        ), f"some requests were not trusted or lost the client address: {echoes}"
        assert any(ipaddress.ip_address(p).version == 6 for p in peers), (
            f"nginx never used IPv6 upstream: {peers}"
        )

        # An IPv6 client (on a dual-stack network of its own that nginx joins for the test).
        extra_net = f"{stack.project}_v6client"
        extra_client = f"{stack.project}-v6client"
        try:
            docker_cli("network", "create", "--ipv6", "--subnet", ula_subnet(), extra_net)
            docker_cli("network", "connect", extra_net, stack.container_id("nginx"))
            docker_cli(
                "run", "-d", "--name", extra_client, "--network", extra_net,
                "--entrypoint", "sleep", stack.images.client, "infinity",
            )  # fmt: skip
            nginx_v6 = stack.inspect("nginx")["NetworkSettings"]["Networks"][extra_net]["GlobalIPv6Address"]
            client_v6 = json.loads(docker_cli("inspect", extra_client).stdout)[0]["NetworkSettings"][
                "Networks"
            ][extra_net]["GlobalIPv6Address"]
            assert nginx_v6 and client_v6, (nginx_v6, client_v6)
            result = docker_cli(
                "exec", extra_client, "curl", "-sS", "--max-time", "10", "-k",
                "-H", "X-Forwarded-For: 203.0.113.7",
                "--resolve", f"{DOMAIN}:443:[{nginx_v6}]", f"https://{DOMAIN}/over-ipv6",
            )  # fmt: skip
            seen = json.loads(result.stdout)
            assert seen["client_ip"] == client_v6, f"authentik sees {seen['client_ip']!r}, not {client_v6}"
            assert seen["scheme"] == "https" and seen["trusted_peer"] is True, seen
            # Another host over the IPv6 listens: 421 on 443 (the domain's SNI), no answer on 80.
            foreign = docker_cli(
                "exec", extra_client, "curl", "-sS", "--max-time", "10", "-k", "-o", "/dev/null",
                "-w", "%{http_code}", "-H", "Host: evil.example",
                "--resolve", f"{DOMAIN}:443:[{nginx_v6}]", f"https://{DOMAIN}/over-ipv6",
            )  # fmt: skip
            assert foreign.stdout == "421", foreign.stdout
            plain = docker_cli(
                "exec", extra_client, "curl", "-sS", "--max-time", "10", "-H", "Host: evil.example",
                f"http://[{nginx_v6}]/", check=False,
            )  # fmt: skip
            assert plain.returncode == 52, f"port 80 over IPv6 answered another host: {plain.stdout}"
        finally:
            docker_cli("rm", "-f", extra_client, check=False)
            docker_cli("network", "disconnect", "-f", extra_net, stack.container_id("nginx"), check=False)
            docker_cli("network", "rm", extra_net, check=False)
