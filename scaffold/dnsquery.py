"""One TSIG-signed DNS query over UDP, with the standard library: does the rfc2136 server answer, and
does it accept the key certbot will sign its updates with?

certbot's rfc2136 plugin signs every message with the TSIG key (RFC 8945). A SOA query signed the same
way tells doctor what certbot will meet, without changing the zone: NOERROR or NXDOMAIN (the key is
good and the server answers for the name), NOTAUTH (the key's name, algorithm or secret is wrong),
REFUSED (the server is not authoritative for the zone, or refuses this client), or no answer at all.
The response's own signature is not verified: doctor only reads the verdict.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import socket
import struct
import time
from dataclasses import dataclass

#: TSIG algorithm names on the wire (RFC 8945 section 6) and their hash for `hmac`.
ALGORITHMS = {
    "HMAC-MD5": ("hmac-md5.sig-alg.reg.int.", "md5"),
    "HMAC-SHA1": ("hmac-sha1.", "sha1"),
    "HMAC-SHA224": ("hmac-sha224.", "sha224"),
    "HMAC-SHA256": ("hmac-sha256.", "sha256"),
    "HMAC-SHA384": ("hmac-sha384.", "sha384"),
    "HMAC-SHA512": ("hmac-sha512.", "sha512"),
}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 9: "NOTAUTH"}
TSIG_ERRORS = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}
TYPE_SOA, TYPE_TSIG, CLASS_IN, CLASS_ANY = 6, 250, 1, 255
FUDGE = 300


@dataclass(frozen=True)
class Answer:
    """The server's verdict: the response code, and the TSIG error when it refused the key."""

    rcode: str
    tsig_error: str | None = None


def wire_name(name: str) -> bytes:
    """A domain name in DNS wire format, lower-case (TSIG's canonical form)."""
    labels = [label for label in name.lower().rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


def signed_soa_query(name: str, key_name: str, algorithm: str, secret_b64: str, *, now: int) -> bytes:
    """A SOA query for `name`, signed with the TSIG key."""
    wire_algorithm, digest = ALGORITHMS[algorithm.upper()]
    query_id = secrets.randbelow(0x10000)
    question = wire_name(name) + struct.pack("!HH", TYPE_SOA, CLASS_IN)
    unsigned = struct.pack("!HHHHHH", query_id, 0, 1, 0, 0, 0) + question
    time_signed = struct.pack("!HI", now >> 32, now & 0xFFFFFFFF)
    variables = (
        wire_name(key_name)
        + struct.pack("!HI", CLASS_ANY, 0)
        + wire_name(wire_algorithm)
        + time_signed
        + struct.pack("!HHH", FUDGE, 0, 0)
    )
    mac = hmac.new(base64.b64decode(secret_b64), unsigned + variables, digest).digest()
    rdata = (
        wire_name(wire_algorithm)
        + time_signed
        + struct.pack("!HH", FUDGE, len(mac))
        + mac
        + struct.pack("!HHH", query_id, 0, 0)
    )
    tsig = wire_name(key_name) + struct.pack("!HHIH", TYPE_TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    return struct.pack("!HHHHHH", query_id, 0, 1, 0, 0, 1) + question + tsig


def _skip_name(message: bytes, offset: int) -> int:
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def _tsig_error(response: bytes) -> str | None:
    """The error field of the response's TSIG record (the last record), if there is one."""
    try:
        qd, an, ns, ar = struct.unpack("!HHHH", response[4:12])
        offset = 12
        for _ in range(qd):
            offset = _skip_name(response, offset) + 4
        for index in range(an + ns + ar):
            offset = _skip_name(response, offset)
            rtype, _, _, rdlength = struct.unpack("!HHIH", response[offset : offset + 10])
            offset += 10
            if rtype == TYPE_TSIG and index == an + ns + ar - 1:
                rdata = response[offset : offset + rdlength]
                after_algorithm = _skip_name(rdata, 0)
                mac_size = struct.unpack("!H", rdata[after_algorithm + 8 : after_algorithm + 10])[0]
                error_at = after_algorithm + 10 + mac_size + 2
                code = struct.unpack("!H", rdata[error_at : error_at + 2])[0]
                return TSIG_ERRORS.get(code, str(code)) if code else None
            offset += rdlength
    except (IndexError, struct.error):
        return None
    return None


def query(
    server: str, port: int, name: str, key_name: str, algorithm: str, secret_b64: str, *, timeout: float = 3
) -> Answer:
    """Send the signed query; raises OSError when nothing answers (or the name does not resolve)."""
    message = signed_soa_query(name, key_name, algorithm, secret_b64, now=int(time.time()))
    family, _, _, _, address = socket.getaddrinfo(server, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, address)
        response, _ = sock.recvfrom(4096)
    if len(response) < 12 or response[:2] != message[:2]:
        raise OSError("the answer does not belong to the query")
    rcode = response[3] & 0x0F
    return Answer(RCODES.get(rcode, str(rcode)), _tsig_error(response))
