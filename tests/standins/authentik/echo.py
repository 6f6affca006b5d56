"""The echo app stand-in: a web app behind forward auth that shows what it received.

Every request is answered with JSON `{"method", "path", "query", "headers", "client"}` (`path` without
the query string, `query` the raw query string, `headers` with lower-case names as in the rest of the
stand-in, `client` the connecting peer's address); a WebSocket upgrade on any path is accepted and
echoes messages. It listens on port 8080 (ECHO_PORT changes it). It lives in the authentik stand-in's
package because it shares its HTTP/1.1 (keep-alive, pipelining, chunked bodies) and WebSocket code.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

from .server import HttpProtocol, _response, listening_socket
from .websocket import EchoSession, handshake_accept

DEFAULT_PORT = 8080


class EchoProtocol(HttpProtocol):
    """One connection to the echo app."""

    def __init__(self) -> None:
        super().__init__(app=None, scheme="http")  # type: ignore[arg-type]

    def _respond(
        self, method: str, target: str, version: str, headers: dict[str, str], body_len: int
    ) -> None:
        keep_alive = self._keep_alive(version, headers)
        if "upgrade" in headers:
            accept = handshake_accept(method, version, headers)
            if accept is not None:
                self._send(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
                )
                self.websocket = EchoSession()
                return
        path, _, query = target.partition("?")
        payload = json.dumps(
            {"method": method, "path": path, "query": query, "headers": headers, "client": self.peer}
        ).encode()
        response = _response(200, payload, keep_alive)
        if method == "HEAD":
            response = response[: len(response) - len(payload)]
        self._send(response)
        if not keep_alive and self.transport is not None:
            self.transport.close()


async def serve(port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(EchoProtocol, sock=listening_socket("::", port))


async def _run(port: int) -> None:
    server = await serve(port)
    print(json.dumps({"event": "echo app listening", "port": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> int:
    asyncio.run(_run(int(os.environ.get("ECHO_PORT") or DEFAULT_PORT)))
    return 0
