"""HTTP/1.1 front end of the authentik stand-in (asyncio protocols, stdlib only).

Serves everything under AUTHENTIK_WEB__PATH as authentik does (outside it: `/` redirects to the path,
the rest is 404). Under the path it refuses unsafe requests whose Origin is not the request's own
(authentik's CSRF check, csrf.py), answers health checks, sends an anonymous visitor of the root
through authentik's redirects to the login flow, serves flow pages as HTML, accepts a login stage
posted to the flow executor, echoes WebSocket frames on ws/client/, and echoes every other request
as authentik would see it (after applying the trusted-proxy rules). Written against asyncio.Protocol
rather than streams because it runs in benchmarks behind nginx.
"""

from __future__ import annotations

import asyncio
import html
import json
import socket
import ssl
from pathlib import Path
from urllib.parse import parse_qs, quote

from .blueprints import blueprints_dir
from .catalog import Catalog
from .core import Core
from .csrf import origin_refusal
from .log import AccessLog
from .outpost import EmbeddedOutpost
from .reply import Reply
from .trust import RequestView, TrustPolicy, parse_ip
from .websocket import EchoSession, handshake_accept

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
HEALTH_PATHS = frozenset({"/-/health/live/", "/-/health/ready/"})
WEBSOCKET_PATH = "/ws/client/"
USER_INTERFACE = "/if/user/"
ADMIN_INTERFACE = "/if/admin/"
FLOW_PREFIX = "/if/flow/"
FLOW_EXECUTOR_PREFIX = "/api/v3/flows/executor/"
LOGIN_FLOW = "default-authentication-flow"
REASONS = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    302: "Found",
    403: "Forbidden",
    401: "Unauthorized",
    404: "Not Found",
    400: "Bad Request",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class App:
    """State shared by all connections."""

    def __init__(
        self, policy: TrustPolicy, access_log: AccessLog, web_path: str = "/", blueprints: Path | None = None
    ) -> None:
        self.policy = policy
        self.access_log = access_log
        self.web_path = web_path
        self.catalog = Catalog(blueprints if blueprints is not None else blueprints_dir())
        self.core = Core(self.catalog, web_path)
        self.outpost = EmbeddedOutpost(self.catalog, self.core, web_path)

    def route(self, path: str) -> str | None:
        """The path inside authentik ('/...') for a request path, or None outside AUTHENTIK_WEB__PATH."""
        if not path.startswith(self.web_path):
            return None
        return path[len(self.web_path) - 1 :]


def _flow_page(web_path: str, slug: str) -> bytes:
    """What matters of authentik's flow interface: an HTML page with the flow executor element,
    whose script submits the login stage as authentik's flow executor does (a same-origin fetch
    POST, so a browser adds its Origin) and writes the answer and the page's address into the DOM
    for a headless browser's --dump-dom."""
    executor = f"{web_path}{FLOW_EXECUTOR_PREFIX.lstrip('/')}{quote(slug, safe='')}/"
    script = (
        "const show = (id, text) => { document.getElementById(id).textContent = text; };"
        "show('location', location.href);"
        # Like authentik's flow executor, go on to an OAuth authorization the login was for (forward
        # auth's round trip); other targets stay on the page, whose DOM then shows the outcome.
        f"const follow = t => {{ try {{ const to = JSON.parse(t).to || '';"
        f" if (to.startsWith({json.dumps(web_path + 'application/o/authorize/')})) location.assign(to);"
        " } catch (e) {} };"
        f"fetch({json.dumps(executor)} + '?query=' + encodeURIComponent(location.search.slice(1)), {{"
        "method: 'POST', headers: {'Content-Type': 'application/json'},"
        "body: JSON.stringify({component: 'ak-stage-identification', uid_field: 'akadmin'})})"
        ".then(r => r.text().then(t => { show('outcome', r.status + ' ' + t); follow(t); }))"
        ".catch(e => show('outcome', 'error ' + e));"
    ).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html><head><title>authentik</title></head><body>"
        f'<ak-flow-executor flowSlug="{html.escape(slug)}"></ak-flow-executor>'
        '<pre id="location"></pre><pre id="outcome"></pre>'
        f"<script>{script}</script></body></html>\n"
    ).encode()


def _response(
    status: int,
    body: bytes,
    keep_alive: bool,
    content_type: str = "application/json",
    location: str = "",
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
    if status != 204:
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    if location:
        head += f"Location: {location}\r\n"
    for name, value in extra or ():
        head += f"{name}: {value}\r\n"
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def _parse_head(raw: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
        raise BadRequest(400, "undecodable head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        name = name.lower()
        value = value.strip()
        if name in headers:
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    return method, target, version, headers


def _decode_chunked(buf: bytearray, start: int) -> tuple[int, int] | None:
    """End offset of a complete chunked body starting at `start` and its decoded size, or None."""
    pos = start
    size_total = 0
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadRequest(400, "bad chunk size") from exc
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return trailer_end + 4, size_total
        size_total += size
        if size_total > MAX_BODY:
            raise BadRequest(413, "body too large")
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2


class HttpProtocol(asyncio.Protocol):
    """One client connection: keep-alive, pipelining, and the switch to WebSocket."""

    def __init__(self, app: App, scheme: str) -> None:
        self.app = app
        self.scheme = scheme
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.websocket: EchoSession | None = None
        self.continued = False
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        address = parse_ip(peername[0]) if peername else None
        self.peer = str(address) if address else (peername[0] if peername else "")

    def data_received(self, data: bytes) -> None:
        if self.websocket is not None:
            self._websocket_data(data)
            return
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing() and self.websocket is None:
            try:
                if not self._handle_one():
                    return
            except BadRequest as exc:
                self._send(_response(exc.status, json.dumps({"error": str(exc)}).encode(), False))
                self.transport.close()
                return
        if self.websocket is not None and self.buffer:
            leftover, self.buffer = bytes(self.buffer), bytearray()
            self._websocket_data(leftover)

    def _handle_one(self) -> bool:
        """Answer one complete request from the buffer; False when more data is needed."""
        buf = self.buffer
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buf) > MAX_HEAD:
                raise BadRequest(431, "request head too large")
            return False
        method, target, version, headers = _parse_head(bytes(buf[:head_end]))
        body_start = head_end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            done = _decode_chunked(buf, body_start)
            if done is None:
                self._continue(headers)
                return False
            end, body_length = done
        else:
            try:
                body_length = int(headers.get("content-length", "0") or 0)
            except ValueError as exc:
                raise BadRequest(400, "bad content-length") from exc
            if body_length < 0 or body_length > MAX_BODY:
                raise BadRequest(413, "body too large")
            end = body_start + body_length
            if len(buf) < end:
                self._continue(headers)
                return False
        self.body = bytes(buf[body_start:end])
        del buf[:end]
        self.continued = False
        self._respond(method, target, version, headers, body_length)
        return True

    def _continue(self, headers: dict[str, str]) -> None:
        """Tell a client that waits for it (curl does for larger bodies) to send the body."""
        if not self.continued and headers.get("expect", "").lower() == "100-continue":
            self.continued = True
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _keep_alive(self, version: str, headers: dict[str, str]) -> bool:
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def _respond(
        self, method: str, target: str, version: str, headers: dict[str, str], body_len: int
    ) -> None:
        app = self.app
        keep_alive = self._keep_alive(version, headers)
        path = target.split("?", 1)[0]
        view = app.policy.view(self.peer, self.scheme, headers)
        inner = app.route(path)
        content_type, location = "application/json", ""
        extra: list[tuple[str, str]] = []
        refusal = origin_refusal(method, headers, view) if inner is not None else None
        reply = app.outpost.handle(method, target, headers)
        if reply is None and inner is not None and refusal is None:
            reply = app.core.handle(method, inner, target, headers)
        if reply is None and inner is not None and refusal is None:
            reply = self._interfaces(method, inner, target, headers, view)
        if reply is not None:
            status, payload, content_type = reply.status, reply.body, reply.content_type
            location, extra = reply.location, reply.headers
        elif refusal is not None:
            # What authentik's API answers (Django REST framework's wording around Django's reason).
            status, payload = 403, json.dumps({"detail": f"CSRF Failed: {refusal}"}).encode()
        elif inner is None:
            # authentik's own router: the bare root leads to the path, nothing else is served.
            if path == "/":
                status, payload, location = 302, b"", app.web_path
            else:
                status, payload = 404, b'{"error": "not found"}'
        elif inner in HEALTH_PATHS:
            status, payload = 200, b""
        elif inner == "/":
            status, payload, location = 302, b"", app.web_path + USER_INTERFACE.lstrip("/")
        elif inner.startswith(FLOW_PREFIX) and inner.count("/") == 4:
            status, content_type = 200, "text/html; charset=utf-8"
            payload = _flow_page(app.web_path, inner.removeprefix(FLOW_PREFIX).strip("/"))
        elif inner == WEBSOCKET_PATH:
            accept = handshake_accept(method, version, headers)
            if accept is None:
                status, payload = 400, b'{"error": "WebSocket upgrade required"}'
            else:
                app.access_log.request(method, target, 101, view.client_ip, view.scheme, view.host)
                self._send(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
                )
                self.websocket = EchoSession()
                return
        else:
            status = 200
            payload = json.dumps(
                {
                    "client_ip": view.client_ip,
                    "scheme": view.scheme,
                    "host": view.host,
                    "method": method,
                    "path": target,
                    "peer": self.peer,
                    "trusted_peer": view.trusted_peer,
                    "body_length": body_len,
                    "headers": headers,
                }
            ).encode()
        response = _response(status, payload, keep_alive, content_type, location, extra)
        if method == "HEAD":
            response = response[: len(response) - len(payload)]
        self._send(response)
        app.access_log.request(method, target, status, view.client_ip, view.scheme, view.host)
        if not keep_alive and self.transport is not None:
            self.transport.close()

    def _interfaces(
        self, method: str, inner: str, target: str, headers: dict[str, str], view: RequestView
    ) -> Reply | None:
        """The user and admin interfaces and the login stage; None to echo the request."""
        app = self.app
        if inner == USER_INTERFACE and app.core.current_user(headers) is None:
            path = target.split("?", 1)[0]
            flow = f"{app.web_path}{FLOW_PREFIX.lstrip('/')}{LOGIN_FLOW}/?next={quote(path, safe='')}"
            return Reply(302, location=flow)
        if inner == ADMIN_INTERFACE:
            # authentik's admin interface fills in the embedded outpost's authentik_host on its first
            # visit when it is empty, with the URL it was opened on.
            app.catalog.set_authentik_host(f"{view.scheme}://{view.host}")
            return None
        if method == "POST" and inner.startswith(FLOW_EXECUTOR_PREFIX) and inner.count("/") == 6:
            return self._login_stage(target, view)
        return None

    def _login_stage(self, target: str, view: RequestView) -> Reply:
        """A submitted identification stage: a session for a known user (no password in the stand-in),
        and where the browser goes next: the flow's `next` when it is a local path, else the user UI."""
        app = self.app
        try:
            submitted = json.loads(self.body or b"{}")
        except ValueError:
            submitted = {}
        username = str(submitted.get("uid_field", "")) if isinstance(submitted, dict) else ""
        cookie = app.core.login(username, secure=view.scheme == "https")
        if cookie is None:
            errors = {"non_field_errors": [{"string": "Failed to authenticate.", "code": "invalid"}]}
            body = {"component": "ak-stage-identification", "response_errors": errors}
            return Reply(200, json.dumps(body).encode(), "application/json")
        flow_query = parse_qs(parse_qs(target.partition("?")[2]).get("query", [""])[0])
        next_url = flow_query.get("next", [""])[0]
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = app.web_path + USER_INTERFACE.lstrip("/")
        body = {"component": "xak-flow-redirect", "to": next_url}
        return Reply(200, json.dumps(body).encode(), "application/json", headers=[cookie])

    def _websocket_data(self, data: bytes) -> None:
        assert self.websocket is not None
        for frame in self.websocket.feed(data):
            self._send(frame)
        if self.websocket.closed and self.transport is not None:
            self.transport.close()

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind host:port; `::` means dual-stack, falling back to 0.0.0.0 where IPv6 is unavailable."""
    if host == "::":
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(("::", port))
            except OSError:
                sock.close()
                raise
        except OSError:
            host = "0.0.0.0"
        else:
            sock.listen(1024)
            sock.setblocking(False)
            return sock
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    app: App, http: list[tuple[str, int]], https: list[tuple[str, int]], tls: ssl.SSLContext
) -> list[asyncio.Server]:
    """Start all listeners; the caller keeps them running."""
    loop = asyncio.get_running_loop()
    servers = []
    for host, port in http:
        sock = listening_socket(host, port)
        servers.append(await loop.create_server(lambda: HttpProtocol(app, "http"), sock=sock))
    for host, port in https:
        sock = listening_socket(host, port)
        servers.append(await loop.create_server(lambda: HttpProtocol(app, "https"), sock=sock, ssl=tls))
    return servers
