"""Stdlib WebSocket echo probe, meant to run inside the client stand-in (`python3 - URL < wsclient.py`).

Tests pass this file's text to python3 in a container, so it must not import anything of ours. It
connects to ws:// or wss:// URL, checks the handshake, sends text, a large binary message, a ping and a
close, and prints a JSON verdict; exit 0 only when every echo came back intact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        data += chunk
    return data


def send_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = _recv_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _recv_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _recv_exact(sock, 8))
    if second & 0x80:
        raise ValueError("server frames must not be masked")
    return first & 0x0F, _recv_exact(sock, length)


def connect(url: str, insecure: bool, host_header: str | None) -> tuple[socket.socket, int]:
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    sock = socket.create_connection((parts.hostname, port), timeout=10)
    if secure:
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=parts.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    host = host_header or parts.netloc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during handshake: {head!r}")
        head += chunk
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if status == 101 and headers.get("sec-websocket-accept") != expected:
        raise ValueError("wrong Sec-WebSocket-Accept")
    return sock, status


def main(argv: list[str]) -> int:
    url = argv[0]
    insecure = "--insecure" in argv
    host_header = next((a.split("=", 1)[1] for a in argv if a.startswith("--host=")), None)
    sock, status = connect(url, insecure, host_header)
    result: dict[str, object] = {"status": status}
    if status == 101:
        big = bytes(range(256)) * 300
        send_frame(sock, 0x1, "hello ✓".encode())
        result["text"] = recv_frame(sock) == (0x1, "hello ✓".encode())
        send_frame(sock, 0x2, big)
        result["binary"] = recv_frame(sock) == (0x2, big)
        send_frame(sock, 0x9, b"ping!")
        result["pong"] = recv_frame(sock) == (0xA, b"ping!")
        send_frame(sock, 0x8, struct.pack("!H", 1000))
        opcode, payload = recv_frame(sock)
        result["close"] = opcode == 0x8 and payload[:2] == struct.pack("!H", 1000)
    sock.close()
    print(json.dumps(result))
    return 0 if status == 101 and all(v is True for k, v in result.items() if k != "status") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
