"""The stand-in images honour the contracts of the official images they replace.

Everything else in the suite trusts these images to behave like nginx, certbot, postgres, authentik and
pebble; these tests are the evidence. The first part needs no Docker (authentik stand-in logic); the
second runs every image on the real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import ssl
import struct
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from docker.models.volumes import Volume

from tests.helpers.polling import wait_for
from tests.standins.authentik.csrf import origin_refusal
from tests.standins.authentik.server import App, serve
from tests.standins.authentik.trust import (
    DEFAULT_TRUSTED_PROXY_CIDRS,
    TrustPolicy,
    parse_ip,
    parse_trusted_cidrs,
)
from tests.standins.authentik.websocket import EchoSession, handshake_accept
from tests.standins.images import StandinImages, ensure_standin_images

WSCLIENT = Path(__file__).parent / "standins" / "wsclient.py"
Files = dict[str, tuple[str | bytes, int]]  # path in the container -> (content, mode)


# --------------------------------------------------------------------------- trust rules (no Docker)


def policy(value: str | None = None) -> TrustPolicy:
    return TrustPolicy(parse_trusted_cidrs(value))


def test_default_trusted_cidrs_are_authentiks() -> None:
    assert [str(n) for n in parse_trusted_cidrs(None)] == DEFAULT_TRUSTED_PROXY_CIDRS.split(",")
    assert "fc00::/7" not in [str(n) for n in parse_trusted_cidrs(None)]  # ULA is not trusted (#12193)


def test_cidr_list_is_comma_separated_trimmed_and_skips_garbage() -> None:
    networks = parse_trusted_cidrs(" 10.1.2.0/24 , fd00:1::/64,not-a-cidr,,300.1.1.0/24")
    assert [str(n) for n in networks] == ["10.1.2.0/24", "fd00:1::/64"]


def test_json_list_is_not_understood() -> None:
    assert parse_trusted_cidrs('["172.16.0.0/12", "10.0.0.0/8"]') == ()
    assert parse_trusted_cidrs('["172.16.0.0/12"]') == ()


def test_set_value_replaces_default_list() -> None:
    assert not policy("10.9.0.0/16").is_trusted(parse_ip("127.0.0.1"))
    assert not policy("").is_trusted(parse_ip("10.0.0.1"))


def test_trusted_peer_uses_rightmost_untrusted_forwarded_entry() -> None:
    headers = {
        "host": "auth.example.org",
        "x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.0.0.9",
        "x-forwarded-proto": "https",
    }
    view = policy().view("172.18.0.3", "http", headers)
    assert view.trusted_peer
    assert view.client_ip == "203.0.113.7"  # the spoofed leftmost 6.6.6.6 is ignored
    assert view.scheme == "https"
    assert view.host == "auth.example.org"


def test_rfc7239_forwarded_from_trusted_peer_wins_over_x_forwarded() -> None:
    headers = {"forwarded": 'for=198.51.100.9;proto=http, for="10.0.0.9"', "x-forwarded-for": "203.0.113.7"}
    view = policy().view("10.0.0.2", "http", headers)
    assert (view.client_ip, view.scheme) == ("198.51.100.9", "http")
    untrusted = policy().view("203.0.113.50", "https", headers)
    assert (untrusted.client_ip, untrusted.scheme) == ("203.0.113.50", "https")


def test_all_forwarded_entries_trusted_gives_leftmost() -> None:
    view = policy().view("10.0.0.2", "http", {"x-forwarded-for": "192.168.1.5, 10.0.0.7"})
    assert view.client_ip == "192.168.1.5"


def test_forwarded_host_used_only_from_trusted_peer() -> None:
    headers = {"host": "internal:9000", "x-forwarded-host": "auth.example.org"}
    assert policy().view("10.0.0.2", "http", headers).host == "auth.example.org"
    assert policy().view("198.51.100.1", "http", headers).host == "internal:9000"


def test_untrusted_peer_ignores_forwarded_headers() -> None:
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    view = policy("192.0.2.0/24").view("172.18.0.3", "http", headers)
    assert not view.trusted_peer
    assert (view.client_ip, view.scheme) == ("172.18.0.3", "http")


def test_csrf_origin_must_be_the_scheme_and_host_authentik_derives() -> None:
    """Django's Origin check: exact `scheme://host`, the host with its port as the request names it."""
    proxied = {"host": "sso.example.test:8443", "x-forwarded-proto": "https"}
    view = policy("10.0.0.0/24").view("10.0.0.2", "http", proxied)
    assert origin_refusal("POST", {"origin": "https://sso.example.test:8443"}, view) is None
    assert origin_refusal("POST", {"origin": "https://sso.example.test"}, view) == (
        "Origin checking failed - https://sso.example.test does not match any trusted origins."
    )
    # Behind a router on 443 the browser and nginx both name the host without a port.
    bare = policy("10.0.0.0/24").view("10.0.0.2", "http", {**proxied, "host": "sso.example.test"})
    assert origin_refusal("PUT", {"origin": "https://sso.example.test"}, bare) is None
    # Safe methods and requests without Origin are not checked by the Origin rule.
    assert origin_refusal("GET", {"origin": "https://evil.example"}, view) is None
    assert origin_refusal("POST", {}, view) is None


def test_csrf_trusts_forwarded_scheme_and_host_only_from_trusted_proxies() -> None:
    headers = {"host": "sso.example.test", "x-forwarded-proto": "https", "x-forwarded-host": "evil.example"}
    trusted = policy("10.0.0.0/24").view("10.0.0.2", "http", headers)
    assert origin_refusal("POST", {"origin": "https://evil.example"}, trusted) is None
    untrusted = policy("10.0.0.0/24").view("198.51.100.7", "http", headers)
    # From anybody else: the connection's own scheme and the Host header.
    assert origin_refusal("DELETE", {"origin": "https://sso.example.test"}, untrusted) is not None
    assert origin_refusal("DELETE", {"origin": "http://sso.example.test"}, untrusted) is None


def test_ipv4_mapped_peer_is_plain_ipv4() -> None:
    view = policy("172.18.0.0/16").view("::ffff:172.18.0.3", "https", {})
    assert view.trusted_peer
    assert view.client_ip == "172.18.0.3"
    assert view.scheme == "https"


def test_ipv6_forwarded_entries() -> None:
    view = policy().view("::1", "http", {"x-forwarded-for": "2001:db8::1, [fe80::1%eth0]"})
    assert view.client_ip == "2001:db8::1"


# --------------------------------------------------------------------------- websocket codec (no Docker)


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    key = b"\x01\x02\x03\x04"
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return struct.pack("!BB", first, 0x80 | len(payload)) + key + body
    return struct.pack("!BBH", first, 0x80 | 126, len(payload)) + key + body


def test_handshake_accept_matches_rfc6455_example() -> None:
    headers = {
        "upgrade": "websocket",
        "connection": "keep-alive, Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    assert handshake_accept("GET", "HTTP/1.1", headers) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert handshake_accept("GET", "HTTP/1.1", {**headers, "upgrade": ""}) is None
    assert handshake_accept("POST", "HTTP/1.1", headers) is None


def test_echo_session_fragments_ping_and_close() -> None:
    session = EchoSession()
    out = session.feed(masked(0x1, b"hel", fin=False) + masked(0x0, b"lo") + masked(0x9, b"p"))
    assert out == [b"\x81\x05hello", b"\x8a\x01p"]
    big = bytes(300)
    assert session.feed(masked(0x2, big)) == [b"\x82\x7e\x01\x2c" + big]
    assert session.feed(masked(0x8, struct.pack("!H", 1000))) == [b"\x88\x02\x03\xe8"]
    assert session.closed


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    session = EchoSession()
    out = session.feed(b"\x81\x02hi")
    assert out[0][0] == 0x88 and out[0][2:4] == struct.pack("!H", 1002)
    assert session.closed


# --------------------------------------------------------------------------- HTTP front end in-process


@pytest.fixture(scope="module")
def local_server() -> Iterator[int]:
    """The stand-in's HTTP listener on an ephemeral loopback port, in a background event loop."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, int] = {}

    async def start() -> None:
        from tests.standins.authentik.log import AccessLog

        app = App(policy(), AccessLog(interval=60))
        servers = await serve(app, [("127.0.0.1", 0)], [], ssl.create_default_context())
        holder["port"] = servers[0].sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert started.wait(10)
    yield holder["port"]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def exchange(port: int, data: bytes, until: Callable[[bytes], bool]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while not until(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def split_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each complete HTTP response in `data`, using Content-Length."""
    responses = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
        if len(rest) < length:
            break
        responses.append((head, rest[:length]))
        data = rest[length:]
    return responses


def test_pipelined_keep_alive_requests_are_answered_in_order(local_server: int) -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3))
    responses = split_responses(exchange(local_server, data, lambda r: len(split_responses(r)) == 3))
    assert [json.loads(body)["path"] for _, body in responses] == ["/0", "/1", "/2"]
    assert all(b"Connection: close" not in head for head, _ in responses)


def test_chunked_body_head_and_http10_close(local_server: int) -> None:
    chunked = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    received = exchange(local_server, chunked, lambda r: b"}" in r)
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["body_length"] == 3
    head = exchange(local_server, b"HEAD /h HTTP/1.0\r\n\r\n", lambda r: False)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert head.endswith(b"\r\n\r\n")


def test_login_post_passes_or_fails_authentiks_csrf_check(local_server: int) -> None:
    login = "POST /api/v3/flows/executor/default-authentication-flow/ HTTP/1.1\r\nHost: a:8443\r\n"
    body = b'{"uid_field": "akadmin"}'
    tail = f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    passed = exchange(local_server, login.encode() + b"Origin: http://a:8443\r\n" + tail, lambda r: b"}" in r)
    assert passed.startswith(b"HTTP/1.1 200"), passed
    assert json.loads(passed.split(b"\r\n\r\n", 1)[1]) == {
        "component": "xak-flow-redirect",
        "to": "/if/user/",
    }
    refused = exchange(local_server, login.encode() + b"Origin: http://a\r\n" + tail, lambda r: b"}" in r)
    assert refused.startswith(b"HTTP/1.1 403"), refused
    assert json.loads(refused.split(b"\r\n\r\n", 1)[1]) == {
        "detail": "CSRF Failed: Origin checking failed - http://a does not match any trusted origins."
    }


def test_health_and_bad_requests(local_server: int) -> None:
    live = exchange(
        local_server, b"GET /-/health/live/ HTTP/1.1\r\nHost: a\r\n\r\n", lambda r: b"\r\n\r\n" in r
    )
    assert live.startswith(b"HTTP/1.1 200") and b"Content-Length: 0" in live
    bad = exchange(local_server, b"NONSENSE\r\n\r\n", lambda r: False)
    assert bad.startswith(b"HTTP/1.1 400")
    ws = exchange(local_server, b"GET /ws/client/ HTTP/1.1\r\nHost: a\r\n\r\n", lambda r: b"}" in r)
    assert ws.startswith(b"HTTP/1.1 400")


# --------------------------------------------------------------------------- Docker helpers


class Sandbox:
    """A private network plus the containers and volumes a test makes; all removed on close."""

    def __init__(self, client: docker.DockerClient, prefix: str) -> None:
        self.client = client
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.network = client.networks.create(self.name, driver="bridge")
        self.containers: list[Container] = []
        self.volumes: list[Volume] = []

    def create(self, image: str, *, name: str, aliases: tuple[str, ...] = (), **kwargs: Any) -> Container:
        """A container on the sandbox network, reachable as `name` and `aliases` (not started)."""
        endpoint = self.client.api.create_endpoint_config(aliases=[name, *aliases])
        container = self.client.containers.create(
            image,
            name=f"{self.name}-{name}",
            network=self.name,
            networking_config={self.name: endpoint},
            detach=True,
            **kwargs,
        )
        self.containers.append(container)
        return container

    def start(self, image: str, *, name: str, files: Files | None = None, **kwargs: Any) -> Container:
        container = self.create(image, name=name, **kwargs)
        if files:
            container.put_archive("/", make_tar(files))
        container.start()
        return container

    def volume(self, suffix: str) -> Volume:
        volume = self.client.volumes.create(f"{self.name}-{suffix}")
        self.volumes.append(volume)
        return volume

    def subnet(self) -> str:
        self.network.reload()
        return self.network.attrs["IPAM"]["Config"][0]["Subnet"]

    def close(self) -> None:
        for container in reversed(self.containers):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        for volume in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)
        self.network.remove()


def make_tar(files: Files) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, (content, mode) in files.items():
            data = content if isinstance(content, bytes) else content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def exec_in(container: Container, *cmd: str) -> tuple[int, str]:
    result = container.exec_run(list(cmd))
    return result.exit_code, result.output.decode(errors="replace")


def exec_ok(container: Container, *cmd: str) -> str:
    code, output = exec_in(container, *cmd)
    assert code == 0, f"{cmd} exited {code}: {output}"
    return output


def exited(container: Container, timeout: float = 90) -> tuple[int, str]:
    status = container.wait(timeout=timeout)["StatusCode"]
    return status, container.logs().decode(errors="replace")


def run_once(client: docker.DockerClient, image: str, command: list[str], **kwargs: Any) -> str:
    """Output of a one-off container; its anonymous volumes go too (`run(remove=True)` keeps them)."""
    container = client.containers.create(image, command, **kwargs)
    try:
        container.start()
        code, output = exited(container, 60)
        assert code == 0, output
        return output
    finally:
        container.remove(force=True, v=True)


# --------------------------------------------------------------------------- Docker fixtures


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient) -> StandinImages:
    return ensure_standin_images(docker_client)


@contextlib.contextmanager
def sandbox_for(client: docker.DockerClient) -> Iterator[Sandbox]:
    box = Sandbox(client, "standins")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def sandbox(docker_client: docker.DockerClient) -> Iterator[Sandbox]:
    with sandbox_for(docker_client) as box:
        yield box


@pytest.fixture(scope="module")
def client_box(sandbox: Sandbox, images: StandinImages) -> Container:
    files: Files = {
        "/tmp/wsclient.py": (WSCLIENT.read_text(), 0o644),
        "/tmp/pebble-ca.pem": (images.pebble_ca_pem, 0o644),
    }
    return sandbox.start(images.client, name="client", files=files)


PG_ENV = {"POSTGRES_USER": "authentik", "POSTGRES_PASSWORD": "pg-secret-1", "POSTGRES_DB": "authentik"}


@pytest.fixture(scope="module")
def postgres(sandbox: Sandbox, images: StandinImages) -> Container:
    container = sandbox.start(images.postgres, name="postgresql", environment=PG_ENV)
    # Over TCP: while initialising, the temporary server listens on the Unix socket only.
    ready = ("pg_isready", "-h", "127.0.0.1", "-U", "authentik")
    wait_for(lambda: exec_in(container, *ready)[0] == 0, "postgres", timeout=90)
    return container


def authentik_env(**extra: str) -> dict[str, str]:
    return {
        "AUTHENTIK_SECRET_KEY": "test-secret-key",
        "AUTHENTIK_POSTGRESQL__HOST": "postgresql",
        "AUTHENTIK_POSTGRESQL__NAME": "authentik",
        "AUTHENTIK_POSTGRESQL__USER": "authentik",
        "AUTHENTIK_POSTGRESQL__PASSWORD": PG_ENV["POSTGRES_PASSWORD"],
        **extra,
    }


def start_authentik(
    sandbox: Sandbox, images: StandinImages, name: str, env: dict[str, str], command: str = "server"
) -> Container:
    container = sandbox.start(images.authentik, name=name, environment=env, command=command)
    wait_for(lambda: exec_in(container, "ak", "healthcheck")[0] == 0, f"{name} healthy", timeout=60)
    return container


@pytest.fixture(scope="module")
def authentik(sandbox: Sandbox, images: StandinImages, postgres: Container) -> Container:
    return start_authentik(sandbox, images, "server", authentik_env())


def echo(client: Container, url: str, *headers: str) -> dict[str, Any]:
    args = ["curl", "-sS", "--fail", "-k"]
    for header in headers:
        args += ["-H", header]
    return json.loads(exec_ok(client, *args, url))


# --------------------------------------------------------------------------- API


@pytest.mark.docker
def test_ensure_is_fast_when_images_exist(docker_client: docker.DockerClient, images: StandinImages) -> None:
    started = time.monotonic()
    again = ensure_standin_images(docker_client)
    assert time.monotonic() - started < 1.0
    assert again == images
    for ref in (
        images.nginx,
        images.certbot,
        images.postgres,
        images.authentik,
        images.pebble,
        images.client,
    ):
        repository, tag = ref.split(":")
        assert repository.startswith("scaffold-standin/") and len(tag) == 12
    assert images.pebble_ca_pem.startswith("-----BEGIN CERTIFICATE-----")


# --------------------------------------------------------------------------- nginx


@pytest.mark.docker
def test_nginx_image_config_matches_official(
    docker_client: docker.DockerClient, images: StandinImages
) -> None:
    config = docker_client.images.get(images.nginx).attrs["Config"]
    assert config["Entrypoint"] == ["/docker-entrypoint.sh"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert config["StopSignal"] == "SIGQUIT"


@pytest.mark.docker
def test_nginx_image_has_no_python_or_openssl(
    docker_client: docker.DockerClient, images: StandinImages
) -> None:
    script = (
        "for c in python3 python openssl curl wget; do command -v $c || true; done; id -u nginx; id -g nginx"
    )
    assert run_once(docker_client, images.nginx, ["sh", "-c", script]).split() == ["101", "101"]


@pytest.mark.docker
def test_nginx_layout(docker_client: docker.DockerClient, images: StandinImages) -> None:
    script = (
        "readlink /var/log/nginx/access.log /var/log/nginx/error.log; test -d /var/cache/nginx; "
        "test -f /usr/share/nginx/html/index.html; test ! -e /etc/nginx/sites-enabled; "
        "test ! -e /etc/nginx/proxy_params; grep -E '^(user|pid|worker_processes)' /etc/nginx/nginx.conf"
    )
    output = run_once(docker_client, images.nginx, ["sh", "-ec", script])
    assert output.split("\n")[:2] == ["/dev/stdout", "/dev/stderr"]
    assert "user  nginx;" in output and "pid        /run/nginx.pid;" in output


NGINX_FILES: Files = {
    # executable *.envsh is sourced (its export reaches later scripts), executable *.sh is run,
    # a non-executable *.sh and any other file are ignored
    "/docker-entrypoint.d/40-export.envsh": ("export STANDIN_MARK=sourced-ok\n", 0o755),
    "/docker-entrypoint.d/45-broken.sh": ("#!/bin/sh\nexit 1\n", 0o644),
    "/docker-entrypoint.d/50-write-conf.sh": (
        "#!/bin/sh\nset -e\n"
        "printf 'server { listen 8080; http2 on; location / { return 200 \"script:%s\\\\n\"; } }\\n' "
        '"$STANDIN_MARK" > /etc/nginx/conf.d/script.conf\n',
        0o755,
    ),
    "/docker-entrypoint.d/notes.txt": ("not a script\n", 0o644),
    "/etc/nginx/templates/tpl.conf.template": (
        'server { listen 8081; location / { return 200 "template:${STANDIN_TEMPLATE}\\n"; } }\n',
        0o644,
    ),
}


@pytest.mark.docker
def test_nginx_entrypoint_scripts_templates_and_conf_d(
    sandbox: Sandbox, images: StandinImages, client_box: Container
) -> None:
    env = {"STANDIN_TEMPLATE": "rendered"}
    nginx = sandbox.start(images.nginx, name="nginx", files=NGINX_FILES, environment=env)
    wait_for(lambda: exec_in(client_box, "curl", "-sf", "http://nginx:8081/")[0] == 0, "nginx", timeout=30)
    assert exec_ok(client_box, "curl", "-sS", "http://nginx:8080/") == "script:sourced-ok\n"
    assert exec_ok(client_box, "curl", "-sS", "--http2-prior-knowledge", "http://nginx:8080/") == (
        "script:sourced-ok\n"
    )
    assert exec_ok(client_box, "curl", "-sS", "http://nginx:8081/") == "template:rendered\n"
    assert "Welcome to nginx!" in exec_ok(client_box, "curl", "-sS", "http://nginx/")
    logs = nginx.logs().decode()
    assert "Sourcing /docker-entrypoint.d/40-export.envsh" in logs
    assert "Ignoring /docker-entrypoint.d/45-broken.sh, not executable" in logs
    assert "Ignoring /docker-entrypoint.d/notes.txt" in logs
    assert logs.index("40-export.envsh") < logs.index("50-write-conf.sh")
    assert '"GET / HTTP/1.1" 200' in logs  # the access log goes to stdout


@pytest.mark.docker
def test_nginx_entrypoint_skips_scripts_for_other_commands(
    docker_client: docker.DockerClient, images: StandinImages
) -> None:
    assert run_once(docker_client, images.nginx, ["echo", "plain"]) == "plain\n"


# --------------------------------------------------------------------------- certbot


@pytest.mark.docker
def test_certbot_entrypoint_and_python(docker_client: docker.DockerClient, images: StandinImages) -> None:
    config = docker_client.images.get(images.certbot).attrs["Config"]
    assert config["Entrypoint"] == ["certbot"]
    assert set(config["Volumes"]) == {"/etc/letsencrypt", "/var/lib/letsencrypt"}
    assert run_once(docker_client, images.certbot, ["--version"]).startswith("certbot ")
    probe = ["-c", "python3 -c 'import cryptography; print(1)' && openssl version >/dev/null && echo ok"]
    assert run_once(docker_client, images.certbot, probe, entrypoint="/bin/sh") == "1\nok\n"


@pytest.mark.docker
def test_certbot_dns_rfc2136_is_certbot_with_the_plugin(
    docker_client: docker.DockerClient, images: StandinImages
) -> None:
    """certbot/dns-rfc2136's contract: certbot's own (entrypoint, volumes) plus the plugin."""
    config = docker_client.images.get(images.certbot_dns_rfc2136).attrs["Config"]
    assert config["Entrypoint"] == ["certbot"]
    assert set(config["Volumes"]) == {"/etc/letsencrypt", "/var/lib/letsencrypt"}
    assert "dns-rfc2136" in run_once(docker_client, images.certbot_dns_rfc2136, ["plugins", "--text"])


# --------------------------------------------------------------------------- postgres


def psql(sandbox: Sandbox, images: StandinImages, password: str, sql: str) -> tuple[int, str]:
    """psql over the network from another container, the way authentik connects."""
    container = sandbox.create(
        images.postgres,
        name=f"psql-{uuid.uuid4().hex[:6]}",
        command=["psql", "-h", "postgresql", "-U", "authentik", "-d", "authentik", "-tAc", sql],
        environment={"PGPASSWORD": password},
    )
    container.start()
    return exited(container, 30)


@pytest.mark.docker
def test_postgres_initialises_and_checks_passwords(
    sandbox: Sandbox, images: StandinImages, postgres: Container
) -> None:
    exec_ok(postgres, "pg_isready", "-d", "authentik", "-U", "authentik")
    code, output = psql(sandbox, images, PG_ENV["POSTGRES_PASSWORD"], "SHOW server_encoding")
    assert (code, output.strip()) == (0, "UTF8")
    code, output = psql(sandbox, images, "wrong-password", "SELECT 1")
    assert code != 0 and "password authentication failed" in output
    script = "tail -n 1 \"$PGDATA/pg_hba.conf\"; awk '/^Uid/{print $2}' /proc/1/status"
    assert exec_ok(postgres, "sh", "-c", script).split("\n")[:2] == ["host all all all scram-sha-256", "70"]


@pytest.mark.docker
def test_postgres_requires_password(sandbox: Sandbox, images: StandinImages) -> None:
    container = sandbox.start(images.postgres, name="pg-nopass", environment={"POSTGRES_USER": "x"})
    code, logs = exited(container, 60)
    assert code == 1 and "superuser password is not specified" in logs


@pytest.mark.docker
@pytest.mark.parametrize("role", ["postgres", "postgres_older"])
def test_postgres_image_config(docker_client: docker.DockerClient, images: StandinImages, role: str) -> None:
    config = docker_client.images.get(getattr(images, role)).attrs["Config"]
    assert config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert config["Cmd"] == ["postgres"]
    assert "PGDATA=/var/lib/postgresql/data" in config["Env"]


@pytest.mark.docker
def test_postgres_standins_are_two_majors(docker_client: docker.DockerClient, images: StandinImages) -> None:
    """bookworm's 15 and trixie's 17: what `scaffold db upgrade` is tested across."""
    versions = [
        run_once(docker_client, image, ["--version"], entrypoint="postgres")
        for image in (images.postgres_older, images.postgres)
    ]
    assert [v.split("(PostgreSQL) ")[1].split(".")[0] for v in versions] == ["15", "17"], versions


# --------------------------------------------------------------------------- authentik


@pytest.mark.docker
def test_authentik_refuses_to_start_without_secret_key(
    sandbox: Sandbox, images: StandinImages, postgres: Container
) -> None:
    env = authentik_env(AUTHENTIK_SECRET_KEY="")
    container = sandbox.start(images.authentik, name="ak-nokey", environment=env, command="server")
    code, logs = exited(container, 30)
    assert code == 1 and "Secret key missing" in logs


@pytest.mark.docker
def test_authentik_exits_when_database_password_is_wrong(
    sandbox: Sandbox, images: StandinImages, postgres: Container
) -> None:
    env = authentik_env(AUTHENTIK_POSTGRESQL__PASSWORD="regenerated")
    container = sandbox.start(images.authentik, name="ak-badpass", environment=env, command="server")
    code, logs = exited(container, 60)
    assert code != 0 and "password authentication failed" in logs


@pytest.mark.docker
def test_authentik_image_config(docker_client: docker.DockerClient, images: StandinImages) -> None:
    config = docker_client.images.get(images.authentik).attrs["Config"]
    assert config["Entrypoint"] == ["dumb-init", "--", "ak"]
    assert config["Healthcheck"]["Test"] == ["CMD", "ak", "healthcheck"]
    assert config["User"] == "1000"


@pytest.mark.docker
def test_authentik_default_trust_echo(authentik: Container, client_box: Container) -> None:
    data = echo(client_box, "http://server:9000/some/path?q=1", "X-Forwarded-Proto: https")
    assert (data["method"], data["path"]) == ("GET", "/some/path?q=1")
    assert "::ffff:" not in data["peer"]
    trusted = TrustPolicy(parse_trusted_cidrs(None)).is_trusted(parse_ip(data["peer"]))
    assert data["trusted_peer"] is trusted
    assert data["scheme"] == ("https" if trusted else "http")
    assert data["headers"]["x-forwarded-proto"] == "https"
    tls = echo(client_box, "https://server:9443/x")
    assert tls["scheme"] == "https" and tls["client_ip"] == tls["peer"]


@pytest.mark.docker
def test_authentik_trusted_peer_xff_chain(
    sandbox: Sandbox, images: StandinImages, postgres: Container, client_box: Container
) -> None:
    env = authentik_env(AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS=f" 192.0.2.0/24 , {sandbox.subnet()} ")
    start_authentik(sandbox, images, "ak-trusted", env)
    data = echo(
        client_box,
        "http://ak-trusted:9000/echo",
        "X-Forwarded-For: 6.6.6.6, 203.0.113.7",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: auth.example.test",
    )
    assert data["trusted_peer"] is True
    assert data["client_ip"] == "203.0.113.7"  # the spoofed leftmost entry is ignored
    assert (data["scheme"], data["host"]) == ("https", "auth.example.test")
    chain = echo(client_box, "http://ak-trusted:9000/echo", f"X-Forwarded-For: 203.0.113.7, {data['peer']}")
    assert chain["client_ip"] == "203.0.113.7"  # a trusted proxy hop is skipped from the right


@pytest.mark.docker
@pytest.mark.parametrize("cidrs", ["192.0.2.0/24", "json"], ids=["other-network", "json-list"])
def test_authentik_untrusted_peer_ignores_forwarded_headers(
    sandbox: Sandbox, images: StandinImages, postgres: Container, client_box: Container, cidrs: str
) -> None:
    value = json.dumps([sandbox.subnet()]) if cidrs == "json" else cidrs
    name = "ak-json" if cidrs == "json" else "ak-untrusted"
    start_authentik(sandbox, images, name, authentik_env(AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS=value))
    headers = ("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.test")
    data = echo(client_box, f"http://{name}:9000/echo", *headers)
    assert data["trusted_peer"] is False
    assert (data["client_ip"], data["scheme"], data["host"]) == (data["peer"], "http", f"{name}:9000")


@pytest.mark.docker
def test_authentik_serves_only_under_its_web_path(
    sandbox: Sandbox, images: StandinImages, postgres: Container, client_box: Container
) -> None:
    """AUTHENTIK_WEB__PATH=/auth/: the root redirects to the path, the rest outside it is 404, and
    under it the anonymous root leads through /auth/if/user/ to the login flow's page."""
    start_authentik(sandbox, images, "ak-path", authentik_env(AUTHENTIK_WEB__PATH="/auth/"))
    fmt = "%{http_code} %{redirect_url}"

    def answer(path: str) -> str:
        return exec_ok(client_box, "curl", "-sS", "-o", "/dev/null", "-w", fmt, f"http://ak-path:9000{path}")

    assert answer("/") == "302 http://ak-path:9000/auth/"
    assert answer("/if/flow/default-authentication-flow/").startswith("404 ")
    assert answer("/auth/-/health/live/").startswith("200 ")
    assert answer("/auth/") == "302 http://ak-path:9000/auth/if/user/"
    flow = "http://ak-path:9000/auth/if/flow/default-authentication-flow/?next=%2Fauth%2Fif%2Fuser%2F"
    assert answer("/auth/if/user/") == f"302 {flow}"
    page = exec_ok(client_box, "curl", "-sS", "--fail", flow)
    assert '<ak-flow-executor flowSlug="default-authentication-flow">' in page
    # its script (which tests/e2e/test_e2e_browser.py runs in chromium) posts under the web path too
    assert 'fetch("/auth/api/v3/flows/executor/default-authentication-flow/"' in page
    assert echo(client_box, "http://ak-path:9000/auth/api/v3/x/")["path"] == "/auth/api/v3/x/"


@pytest.mark.docker
def test_authentik_refuses_a_web_path_without_slashes(
    sandbox: Sandbox, images: StandinImages, postgres: Container
) -> None:
    container = sandbox.start(
        images.authentik,
        name="ak-badpath",
        environment=authentik_env(AUTHENTIK_WEB__PATH="auth"),
        command="server",
    )
    status, logs = exited(container)
    assert status == 1 and "must start and end with '/'" in logs, logs


@pytest.mark.docker
def test_authentik_websocket_echo(authentik: Container, client_box: Container) -> None:
    for url in ("ws://server:9000/ws/client/", "wss://server:9443/ws/client/"):
        output = exec_ok(client_box, "python3", "/tmp/wsclient.py", url, "--insecure")
        assert json.loads(output) == {
            "status": 101,
            "text": True,
            "binary": True,
            "pong": True,
            "close": True,
        }
    status = ("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://server:9000/ws/client/")
    assert exec_ok(client_box, *status) == "400"


@pytest.mark.docker
def test_authentik_keep_alive_and_throughput(authentik: Container, client_box: Container) -> None:
    url = "http://server:9000/-/health/ready/"
    connects = exec_ok(client_box, "curl", "-s", "-o", "/dev/null", "-w", "%{num_connects} ", url, url, url)
    assert connects.split() == ["1", "0", "0"]  # one connection, reused
    output = exec_ok(client_box, "wrk", "-t1", "-c8", "-d2s", "http://server:9000/bench")
    assert "Socket errors" not in output and "Non-2xx" not in output
    assert float(output.split("Requests/sec:")[1].split()[0]) > 500, output


@pytest.mark.docker
def test_authentik_healthcheck_server_worker_and_idle(
    sandbox: Sandbox, images: StandinImages, authentik: Container
) -> None:
    assert exec_in(authentik, "ak", "healthcheck")[0] == 0
    worker = start_authentik(sandbox, images, "worker", authentik_env(), command="worker")
    assert "authentik-worker-heartbeat" in exec_ok(worker, "sh", "-c", 'ls "$TMPDIR"')
    idle = sandbox.start(images.authentik, name="ak-idle", entrypoint=["sleep", "60"])
    assert exec_in(idle, "ak", "healthcheck")[0] == 1


# --------------------------------------------------------------------------- pebble + certbot + nginx


@pytest.mark.docker
def test_pebble_directory_verifies_with_ca(
    sandbox: Sandbox, images: StandinImages, client_box: Container
) -> None:
    sandbox.start(images.pebble, name="pebble")
    url, ca = "https://pebble:14000/dir", "/tmp/pebble-ca.pem"
    wait_for(lambda: exec_in(client_box, "curl", "-s", "--cacert", ca, url)[0] == 0, "pebble", timeout=30)
    directory = json.loads(exec_ok(client_box, "curl", "-sS", "--cacert", ca, url))
    assert directory["newAccount"] == "https://pebble:14000/sign-me-up"
    as_localhost = ("--connect-to", "localhost:14000:pebble:14000", "https://localhost:14000/dir")
    exec_ok(client_box, "curl", "-sS", "-o", "/dev/null", "--cacert", ca, *as_localhost)
    assert exec_in(client_box, "curl", "-s", url)[0] != 0  # not trusted without the CA


CERTBOT_SCRIPT = """
set -e
printf '%s' "$CA_PEM" > /tmp/ca.pem
i=0
until python3 -c "import ssl, urllib.request as u; u.urlopen('https://pebble:14000/dir', \
context=ssl.create_default_context(cafile='/tmp/ca.pem'))" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 60 ] || exit 3; sleep 0.5
done
exec certbot certonly --webroot -w /var/www/html -d "$DOMAIN" --server https://pebble:14000/dir \
    --register-unsafely-without-email --agree-tos --non-interactive
"""


@pytest.mark.docker
def test_certbot_gets_certificate_from_pebble_via_nginx_alias(
    docker_client: docker.DockerClient, images: StandinImages
) -> None:
    """pebble resolves the domain with Docker's DNS, where nginx carries the domain as a network alias."""
    domain = "app.standin.test"
    with sandbox_for(docker_client) as box:
        webroot = box.volume("webroot")
        box.start(images.pebble, name="pebble")
        html = {webroot.name: {"bind": "/usr/share/nginx/html"}}
        box.start(images.nginx, name="edge", aliases=(domain,), volumes=html)
        certbot = box.start(
            images.certbot,
            name="certbot",
            entrypoint=["/bin/sh", "-c", CERTBOT_SCRIPT],
            environment={
                "REQUESTS_CA_BUNDLE": "/tmp/ca.pem",
                "CA_PEM": images.pebble_ca_pem,
                "DOMAIN": domain,
            },
            volumes={webroot.name: {"bind": "/var/www/html"}},
        )
        code, logs = exited(certbot, 120)
        assert code == 0, logs
        assert f"/etc/letsencrypt/live/{domain}/fullchain.pem" in logs


# --------------------------------------------------------------------------- client


@pytest.mark.docker
def test_client_tools(client_box: Container) -> None:
    script = "curl --version; openssl version; python3 -V; h2load --version; wrk -v || true"
    output = exec_ok(client_box, "sh", "-ec", script)
    for word in ("HTTP2", "OpenSSL", "Python 3", "h2load", "wrk"):
        assert word in output


# --------------------------------------------------------------------------- forward auth (issue 15)

FORWARD_AUTH_BLUEPRINT = """version: 1
metadata:
  name: {name} forward auth
entries:
  - model: authentik_providers_proxy.proxyprovider
    id: provider
    identifiers:
      name: {name}
    attrs:
      mode: forward_single
      external_host: https://{name}.example.test
      authorization_flow: !Find
        [authentik_flows.flow, [slug, default-provider-authorization-implicit-consent]]
  - model: authentik_core.application
    identifiers:
      slug: {name}
    attrs:
      name: {name}
      provider: !KeyOf provider
  - model: authentik_outposts.outpost
    identifiers:
      name: authentik Embedded Outpost
    attrs:
      config:
        authentik_host: https://sso.example.test/
      providers: {providers}
"""


def outpost_status(client: Container, host: str, path: str = "auth/nginx") -> str:
    return exec_ok(
        client, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}",
        "-H", f"X-Original-URL: https://{host}/", f"http://outpost-server:9000/outpost.goauthentik.io/{path}",
    )  # fmt: skip


@pytest.mark.docker
def test_echoapp_image_echoes_requests_and_websockets(
    sandbox: Sandbox, images: StandinImages, client_box: Container
) -> None:
    sandbox.start(images.echoapp, name="echoapp")
    sandbox.start(images.echoapp, name="echoapp-port", environment={"ECHO_PORT": "9090"})
    seen = wait_for(
        lambda: echo(client_box, "http://echoapp:8080/some/path?a=1", "X-authentik-username: akadmin"),
        "echo app answers",
        timeout=30,
    )
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/some/path", "a=1")
    assert seen["headers"]["x-authentik-username"] == "akadmin"
    client_box.reload()
    assert seen["client"] == client_box.attrs["NetworkSettings"]["Networks"][sandbox.name]["IPAddress"]
    assert (
        wait_for(lambda: echo(client_box, "http://echoapp-port:9090/"), "ECHO_PORT", timeout=30)["path"]
        == "/"
    )
    output = exec_ok(client_box, "python3", "/tmp/wsclient.py", "ws://echoapp:8080/socket")
    assert json.loads(output)["status"] == 101 and json.loads(output)["text"] is True


@pytest.mark.docker
def test_authentik_image_serves_the_embedded_outpost_from_its_blueprints(
    sandbox: Sandbox, images: StandinImages, postgres: Container, client_box: Container
) -> None:
    first = FORWARD_AUTH_BLUEPRINT.format(name="one", providers="[!KeyOf provider]")
    files: Files = {"/blueprints/custom/one.yaml": (first, 0o644)}
    server = sandbox.start(
        images.authentik, name="outpost-server", environment=authentik_env(), command="server", files=files
    )
    logs = lambda: server.logs().decode(errors="replace")  # noqa: E731
    wait_for(lambda: exec_in(server, "ak", "healthcheck")[0] == 0, "server healthy", timeout=60, context=logs)
    assert outpost_status(client_box, "one.example.test") == "401"
    assert outpost_status(client_box, "two.example.test") == "404"
    assert outpost_status(client_box, "two.example.test", "ping") == "204"
    # A blueprint written into the running server is applied; its outpost entry lists both providers.
    both = "[!KeyOf provider, !Find [authentik_providers_proxy.proxyprovider, [name, one]]]"
    second = FORWARD_AUTH_BLUEPRINT.format(name="two", providers=both)
    server.put_archive("/", make_tar({"/blueprints/custom/nested/two.yaml": (second, 0o644)}))
    wait_for(lambda: outpost_status(client_box, "two.example.test") == "401", "second blueprint applied")
    assert outpost_status(client_box, "one.example.test") == "401"
    worker = sandbox.start(
        images.authentik, name="outpost-worker", environment=authentik_env(), command="worker", files=files
    )
    wait_for(lambda: b"Blueprint applied successfully" in worker.logs(), "worker reads the blueprints")
