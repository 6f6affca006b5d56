"""Requests from this host to the ports a stack publishes, made the way a browser makes them.

A browser behind a router that forwards public port 443 to the published port names the host
without a port; one that opens the published port itself names `domain:port`. nginx cannot tell
the two apart except by that Host (and the Origin the browser adds to a POST), so these helpers
send exactly the Host and Origin a test gives, over TLS to 127.0.0.1 with SNI = the domain.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, Stack

REDIRECTS = frozenset({301, 302, 303, 307, 308})
LOGIN = "/api/v3/flows/executor/default-authentication-flow/?query=next%3D%252Fif%252Fuser%252F"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _PublishedTLS(http.client.HTTPSConnection):
    """TLS to 127.0.0.1:port with SNI = the given host name, whatever that name resolves to."""

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def published_request(
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    method: str = "GET",
    body: bytes | None = None,
    tls: bool = True,
    sni: str = DOMAIN,
) -> Answer:
    """One request to a host port nginx publishes, on the wire as a browser sends it.

    `headers` must name the Host (a browser behind a router that forwards 443 to the published port
    sends the domain without a port; one on the published port sends `domain:port`). Redirects are
    not followed: the test looks at each Location.
    """
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = _PublishedTLS(sni, port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def walk(port: int, host: str, path: str = "/") -> list[tuple[str, Answer]]:
    """GET `path` as a browser that typed https://<host><path>, following every redirect (at most 5)."""
    url = f"https://{host}{path}"
    hops = []
    for _ in range(6):
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        answer = published_request(port, target, {"Host": host})
        hops.append((url, answer))
        if answer.status not in REDIRECTS:
            return hops
        url = urljoin(url, answer.headers["location"])
    raise AssertionError(f"redirect loop: {[(u, a.status) for u, a in hops]}")


#: What the login form's identification stage submits (the stand-in asks for no password).
LOGIN_BODY = '{"component": "ak-stage-identification", "uid_field": "akadmin"}'


def login(port: int, host: str, origin: str) -> Answer:
    """The login form's POST to authentik's flow executor, with the Origin a browser adds."""
    body = LOGIN_BODY.encode()
    headers = {"Host": host, "Origin": origin, "Content-Type": "application/json"}
    return published_request(port, LOGIN, headers, method="POST", body=body)


def wait_until_served(stack: Stack, host: str = DOMAIN) -> None:
    """Wait until authentik answers its health check through nginx's published port for `host`."""
    wait_for(
        lambda: published_request(stack.https_port, "/-/health/live/", {"Host": host}).status == 200,
        "authentik through nginx",
        timeout=180,
        context=lambda: stack.logs("nginx")[-2000:],
    )
