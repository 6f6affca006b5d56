"""scaffold/dnsquery.py: the TSIG-signed SOA query doctor sends to an rfc2136 server, and how it reads the
verdict. A real BIND checks the signature in tests/e2e/test_e2e_dns01.py (BADSIG, then accepted); here a
local UDP responder gives each verdict, so the reading of the answer is checked on every run."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from scaffold import dnsquery

SECRET = "c2VjcmV0LWtleS1ieXRlcy0zMg=="


def answer_once(rcode: int, tsig_error: int) -> int:
    """A UDP port on 127.0.0.1 that answers one query: the query itself as a response with `rcode`,
    its TSIG record carrying `tsig_error` (the record ends with the error and the other-data length)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def serve() -> None:
        with sock:
            query, peer = sock.recvfrom(4096)
            flags = struct.unpack("!H", query[2:4])[0] | 0x8000 | rcode
            sock.sendto(
                query[:2] + struct.pack("!H", flags) + query[4:-4] + struct.pack("!HH", tsig_error, 0), peer
            )

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("rcode", "tsig_error", "expected"),
    [
        (0, 0, dnsquery.Answer("NOERROR")),
        (3, 0, dnsquery.Answer("NXDOMAIN")),
        (9, 16, dnsquery.Answer("NOTAUTH", "BADSIG")),
        (9, 17, dnsquery.Answer("NOTAUTH", "BADKEY")),
        (5, 0, dnsquery.Answer("REFUSED")),
    ],
)
def test_the_server_s_verdict_is_read(rcode: int, tsig_error: int, expected: dnsquery.Answer) -> None:
    port = answer_once(rcode, tsig_error)
    answer = dnsquery.query("127.0.0.1", port, "sso.example.test", "certbot.", "HMAC-SHA256", SECRET)
    assert answer == expected


def test_silence_is_an_error_not_a_verdict() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            dnsquery.query(
                "127.0.0.1",
                quiet.getsockname()[1],
                "sso.example.test",
                "k.",
                "HMAC-SHA512",
                SECRET,
                timeout=0.5,
            )


def test_the_query_is_signed_with_the_key_s_name_algorithm_and_secret(monkeypatch) -> None:
    monkeypatch.setattr(dnsquery.secrets, "randbelow", lambda _: 7)  # the same query id each time

    def mac(secret: str) -> bytes:
        message = dnsquery.signed_soa_query(
            "SSO.example.test", "Certbot.", "hmac-sha512", secret, now=1_700_000_000
        )
        assert struct.unpack("!H", message[10:12]) == (1,), "one additional record: the TSIG"
        assert dnsquery.wire_name("certbot.") in message and dnsquery.wire_name("hmac-sha512.") in message
        assert dnsquery.wire_name("sso.example.test") in message  # lower-case, TSIG's canonical form
        return message[-6 - 64 : -6]  # the SHA-512 MAC, before original id, error and other length

    assert mac(SECRET) == mac(SECRET)
    assert mac(SECRET) != mac("b3RoZXI="), "another secret gives another MAC"
