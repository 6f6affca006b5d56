"""A browser's view of forward auth: requests to a stack's published HTTPS port with one cookie jar per host.

Used by the forward-auth end-to-end tests and bench/forward_auth.py. Requests go to 127.0.0.1 with the
host name as SNI and `Host: name:port`, as a browser on the published port sends them; the login is the
authentik stand-in's (embedded outpost, authorize step, identification stage).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptography import x509

from tests.helpers.browser import LOGIN, _PublishedTLS
from tests.helpers.clients import served_certificate
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, Stack

#: The upstream of an app in front of the echo app stand-in (`serve_echo_app`).
ECHO_UPSTREAM = "http://echo:8080"


def serve_echo_app(stack: Stack, hosts: list[str]) -> None:
    """Add to compose.test.yaml the echo app on the `apps` network, and every app host as an alias of
    nginx on `outbound`, so pebble's HTTP challenges for them reach nginx. Call before `stack.up()`."""
    path = stack.dir / "compose.test.yaml"
    override = json.loads(path.read_text())
    override["services"]["echo"] = {"image": stack.images.echoapp, "networks": ["apps"]}
    override["services"]["nginx"]["networks"]["outbound"]["aliases"] = [DOMAIN, *hosts]
    path.write_text(json.dumps(override, indent=2))


def pebble_issued(stack: Stack, host: str) -> bool:
    """Whether nginx serves `host` with pebble's certificate for that name (no longer the placeholder)."""
    cert = served_certificate(stack, host)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return "Pebble" in cert.issuer.rfc4514_string() and host in names.get_values_for_type(x509.DNSName)


def wait_for_pebble_certificates(stack: Stack, hosts: list[str], timeout: float = 180) -> None:
    """Until every host in `hosts` is served with its pebble certificate: certbot is done with them,
    so no reload for a new certificate comes in the middle of a test."""
    for host in hosts:
        wait_for(
            lambda host=host: pebble_issued(stack, host),
            f"a pebble certificate for {host}",
            timeout=timeout,
            context=lambda: stack.logs("certbot")[-3000:],
        )


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def published_request(
    port: int, path: str, headers: dict[str, str], *, sni: str, method: str = "GET", body: bytes | None = None
) -> Answer:
    """One request over TLS to the published port (SNI = the host name), every Set-Cookie kept."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = _PublishedTLS(sni, port, timeout=10, context=context)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        pairs = response.getheaders()
        return Answer(
            response.status,
            {k.lower(): v for k, v in pairs},
            [v for k, v in pairs if k.lower() == "set-cookie"],
            response.read(),
        )
    finally:
        conn.close()


@dataclass
class Browser:
    """Requests to the published port as a browser makes them: Host with the port, cookies per host."""

    stack: Stack
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)

    def host(self, name: str) -> str:
        return f"{name}:{self.stack.https_port}"

    def request(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Answer:
        parts = urlsplit(url)
        name = parts.hostname or ""
        jar = self.cookies.setdefault(name, {})
        sent = {"Host": parts.netloc, **(headers or {})}
        if jar:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        answer = published_request(self.stack.https_port, target or "/", sent, sni=name, **kwargs)
        for line in answer.set_cookies:
            key, _, value = line.split(";", 1)[0].partition("=")
            jar[key.strip()] = value.strip()
        return answer

    def walk(self, url: str, headers: dict[str, str] | None = None) -> list[tuple[str, Answer]]:
        hops = []
        for _ in range(10):
            answer = self.request(url, headers)
            hops.append((url, answer))
            if answer.status not in (301, 302, 303, 307, 308):
                return hops
            url = urljoin(url, answer.headers["location"])
        raise AssertionError(f"redirect loop: {[(u, a.status) for u, a in hops]}")

    def log_in(self, app: str, username: str = "akadmin") -> list[tuple[str, Answer]]:
        """Open the app, sign in at authentik as `username`, and follow the redirects back to the app."""
        start = f"https://{self.host(app)}/after-login?x=1"
        hops = self.walk(start)
        sso = f"https://{self.host(DOMAIN)}"
        body = json.dumps({"component": "ak-stage-identification", "uid_field": username}).encode()
        headers = {"Origin": sso, "Content-Type": "application/json"}
        answer = self.request(sso + LOGIN, headers, method="POST", body=body)
        assert answer.status == 200, answer
        authorize = next(url for url, _ in hops if "/application/o/authorize/" in url)
        return self.walk(authorize)

    def echo(self, app: str, path: str = "/", headers: dict[str, str] | None = None) -> dict[str, Any]:
        answer = self.request(f"https://{self.host(app)}{path}", headers)
        assert answer.status == 200, (answer.status, answer.headers, answer.body[:300])
        return answer.json()
