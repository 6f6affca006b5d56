"""Minimal RFC 6455 server side: handshake and an echoing frame loop.

authentik's UI and outposts talk over WebSockets; the stand-in echoes so tests can prove that a proxy
passes the upgrade and frames in both directions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 16 * 1024 * 1024

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def handshake_accept(method: str, version: str, headers: dict[str, str]) -> str | None:
    """The Sec-WebSocket-Accept value for a valid upgrade request, else None."""
    if method != "GET" or version != "HTTP/1.1":
        return None
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        return None
    if "upgrade" not in _tokens(headers.get("connection", "")):
        return None
    if headers.get("sec-websocket-version", "").strip() != "13":
        return None
    key = headers.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked server frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def unmask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class EchoSession:
    """Parses client frames from a byte stream and produces the bytes to send back."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self.closed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Consume data; return frames to send. Sets `closed` once a close frame was answered."""
        self._buffer += data
        out: list[bytes] = []
        try:
            while not self.closed:
                frame = self._next_frame()
                if frame is None:
                    break
                out.extend(self._handle(*frame))
        except ProtocolError as exc:
            out.append(encode_frame(OP_CLOSE, struct.pack("!H", exc.code) + str(exc).encode()[:120]))
            self.closed = True
        return out

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise ProtocolError(1002, "reserved bits set")
        if not second & 0x80:
            raise ProtocolError(1002, "client frames must be masked")
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            offset = 10
        if length > MAX_MESSAGE:
            raise ProtocolError(1009, "frame too big")
        if len(buf) < offset + 4 + length:
            return None
        key = bytes(buf[offset : offset + 4])
        payload = unmask(bytes(buf[offset + 4 : offset + 4 + length]), key)
        del buf[: offset + 4 + length]
        return bool(first & 0x80), first & 0x0F, payload

    def _handle(self, fin: bool, opcode: int, payload: bytes) -> list[bytes]:
        if opcode == OP_PING:
            return [encode_frame(OP_PONG, payload)]
        if opcode == OP_PONG:
            return []
        if opcode == OP_CLOSE:
            self.closed = True
            return [encode_frame(OP_CLOSE, payload[:2])]
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments:
                raise ProtocolError(1002, "new message inside a fragmented one")
            if fin:
                return [encode_frame(opcode, payload)]
            self._fragment_opcode = opcode
            self._fragments.append(payload)
            return []
        if opcode == OP_CONT:
            if not self._fragments:
                raise ProtocolError(1002, "continuation without a message")
            self._fragments.append(payload)
            if sum(len(part) for part in self._fragments) > MAX_MESSAGE:
                raise ProtocolError(1009, "message too big")
            if not fin:
                return []
            message = b"".join(self._fragments)
            self._fragments.clear()
            return [encode_frame(self._fragment_opcode, message)]
        raise ProtocolError(1002, f"unknown opcode {opcode}")
