"""Trusted-proxy rules of authentik's front end (2026.8 and later).

Kept free of I/O so the rules can be unit-tested without Docker: whether a stack's proxy network is
trusted decides if authentik sees the real client address and scheme, which is the most common upgrade
breakage (see the notes on trusted proxy networks).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TRUSTED_PROXY_CIDRS = "127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fe80::/10,::1/128"
ENV_TRUSTED_PROXY_CIDRS = "AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"


def parse_trusted_cidrs(value: str | None) -> tuple[Network, ...]:
    """Parse authentik's comma-separated CIDR list.

    Unset means authentik's default list; a set value replaces it entirely. Entries are trimmed and an
    entry that does not parse (a JSON list, a typo) is skipped without a word, like authentik does.
    """
    if value is None:
        value = DEFAULT_TRUSTED_PROXY_CIDRS
    networks: list[Network] = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return tuple(networks)


def parse_ip(text: str) -> IPAddress | None:
    """An address as a proxy or socket reports it; IPv4-mapped IPv6 becomes plain IPv4."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class RequestView:
    """What authentik concludes about a request's origin."""

    client_ip: str
    scheme: str
    host: str
    trusted_peer: bool


class TrustPolicy:
    """Decides which peers may speak for clients through X-Forwarded-* headers."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self._cache: dict[str, bool] = {}

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> TrustPolicy:
        return cls(parse_trusted_cidrs(environ.get(ENV_TRUSTED_PROXY_CIDRS)))

    def is_trusted(self, address: IPAddress | None) -> bool:
        if address is None:
            return False
        key = str(address)
        cached = self._cache.get(key)
        if cached is None:
            cached = any(address.version == net.version and address in net for net in self.networks)
            if len(self._cache) < 4096:
                self._cache[key] = cached
        return cached

    def forwarded_client(self, xff: str) -> IPAddress | None:
        """The rightmost X-Forwarded-For entry that is not a trusted proxy (all trusted: the leftmost).

        Scanning from the right stops a client from spoofing its address by sending its own header:
        the entry appended by the trusted proxy is the one that counts.
        """
        addresses = [a for a in (parse_ip(part) for part in xff.split(",")) if a is not None]
        if not addresses:
            return None
        for address in reversed(addresses):
            if not self.is_trusted(address):
                return address
        return addresses[0]

    def view(self, peer: str, own_scheme: str, headers: dict[str, str]) -> RequestView:
        """Client address, scheme and host for a request from `peer`; `headers` has lower-case names.

        From a trusted peer, RFC 7239 `Forwarded` wins over the X-Forwarded-* headers (a proxy that
        passes a client's own `Forwarded` header through therefore lets the client spoof itself).
        """
        peer_ip = parse_ip(peer)
        host = headers.get("host", "")
        if not self.is_trusted(peer_ip):
            return RequestView(str(peer_ip) if peer_ip else peer, own_scheme, host, False)
        forwarded = parse_forwarded(headers.get("forwarded", ""))
        client: IPAddress | None = None
        xff = ",".join(e["for"] for e in forwarded if "for" in e) or headers.get("x-forwarded-for")
        if xff:
            client = self.forwarded_client(xff)
        scheme = own_scheme
        proto = next((e["proto"] for e in forwarded if "proto" in e), None)
        proto = proto or headers.get("x-forwarded-proto")
        if proto:
            scheme = proto.split(",", 1)[0].strip().lower() or own_scheme
        forwarded_host = next((e["host"] for e in forwarded if "host" in e), None) or headers.get(
            "x-forwarded-host"
        )
        if forwarded_host:
            host = forwarded_host.split(",", 1)[0].strip() or host
        return RequestView(str(client or peer_ip), scheme, host, True)


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 elements (`for=1.2.3.4;proto=https, for="[2001:db8::1]"`) as dicts of lower-case keys."""
    elements = []
    for element in value.split(","):
        pairs = {}
        for pair in element.split(";"):
            key, sep, raw = pair.partition("=")
            if sep:
                pairs[key.strip().lower()] = raw.strip().strip('"')
        if pairs:
            elements.append(pairs)
    return elements
