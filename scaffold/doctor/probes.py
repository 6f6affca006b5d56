"""What doctor's checks send and ask to look at a stack: HTTPS and WebSocket requests through nginx,
the certificate nginx serves, and commands and logs of a container.

Every probe here is read-only and talks to 127.0.0.1 or to the project's own containers. TLS is not
verified on purpose: doctor looks at what nginx serves (maybe a placeholder or an expired
certificate) and trusts nothing it receives.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

from scaffold.doctor.core import NET_TIMEOUT, Context

if TYPE_CHECKING:
    from scaffold.dockerapi import DockerContainer

#: authentik's WebSocket endpoint, under web_path.
WEBSOCKET_SUBPATH = "ws/client/"
WEBSOCKET_PATH = "/" + WEBSOCKET_SUBPATH
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 65536


def unverified_tls_context(*, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that accepts any certificate: doctor inspects what it gets, it does not trust it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


@contextlib.contextmanager
def tls_to_nginx(
    port: int, domain: str, timeout: float = NET_TIMEOUT, *, alpn: list[str] | None = None
) -> Iterator[ssl.SSLSocket]:
    """TLS to 127.0.0.1:`port` with SNI `domain`, unverified."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        unverified_tls_context(alpn=alpn).wrap_socket(raw, server_hostname=domain) as tls,
    ):
        yield tls


def fetch_served_certificate(port: int, server_name: str, timeout: float = NET_TIMEOUT) -> bytes:
    """The DER certificate served on 127.0.0.1:`port` for SNI `server_name` (not verified on purpose)."""
    with tls_to_nginx(port, server_name, timeout) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return der


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
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


def exchange_head(
    port: int, domain: str, request: str, timeout: float = NET_TIMEOUT
) -> tuple[int, dict[str, str]]:
    """Send one HTTP/1.1 request through nginx; (status, lower-cased headers) of the answer's head."""
    with tls_to_nginx(port, domain, timeout, alpn=["http/1.1"]) as tls:
        tls.sendall(request.encode("ascii"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
    return _parse_head(head)


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


def run_in_container(ctx: Context, container: DockerContainer, command: list[str]) -> tuple[int | None, str]:
    """(exit code, output) of `command` run in `container`, as `docker exec` would."""
    assert ctx.docker is not None
    return ctx.docker.exec_run(container.id, command)
