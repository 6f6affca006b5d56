"""Choosing and checking the proxy network's subnets. Pure logic: no Docker, no I/O.

authentik trusts the proxy headers of every address in AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS,
so the subnet nginx and authentik share must be small, private, and collide with nothing
(a collision makes `docker compose up` fail with "Pool overlaps", or routes traffic astray).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from scaffold.errors import SubnetError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: The same union as `answer_rules.Network`, spelled here so that importing this module does not load the
#: answer rules: the copier task with `proxy_subnet=auto` (the default) never needs them.
Network = IPv4Network | IPv6Network

#: Where an automatic IPv4 subnet comes from, in order. The upper half of 10/8 first: it is
#: outside Docker's default address pools (172.17-31/16, 192.168/16 in /20s), so a network
#: Compose creates without a pinned subnet can never be handed an overlapping range, and it
#: is less used by home LANs than 10.0.x.x. Then the rest of RFC 1918, as a last resort.
AUTO_V4_POOLS = (
    IPv4Network("10.128.0.0/9"),
    IPv4Network("10.0.0.0/9"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
)
#: nginx and the authentik server need two addresses, Docker one for the gateway: a /28
#: (13 usable) leaves room for more proxies while trusting as little as possible.
AUTO_V4_PREFIX = 28
#: IPv6: a unique-local /64 (RFC 4193), the usual size of one IPv6 link.
AUTO_V6_PREFIX = 64


@dataclass(frozen=True)
class Occupied:
    """A range already in use, and by what (for messages)."""

    network: Network
    owner: str


def parse_subnet(text: str) -> Network:
    """Parse a CIDR strictly (no host bits), with a message that says what is wrong."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise SubnetError(
            f"'{text}' is not a network in CIDR form ({exc})",
            hint="use a form such as 10.203.7.0/28 (IPv4) or fd12:3456:789a:1::/64 (IPv6)",
        ) from None


def overlapping(subnet: Network, occupied: Iterable[Occupied]) -> list[Occupied]:
    """Everything in `occupied` that shares an address with `subnet`."""
    return [
        item for item in occupied if item.network.version == subnet.version and item.network.overlaps(subnet)
    ]


def describe(clashes: Iterable[Occupied]) -> str:
    """`10.1.0.0/16 (Docker network 'x'), ...` for messages."""
    return ", ".join(f"{item.network} ({item.owner})" for item in clashes)


def check_user_subnet(subnet: Network, occupied: Iterable[Occupied]) -> None:
    """Refuse a subnet the user gave if it is public, too large, too small (the answer rule) or collides."""
    from scaffold.answer_rules import AnswerProblem, check_proxy_network

    try:
        check_proxy_network(subnet)
    except AnswerProblem as problem:
        raise SubnetError(problem.message, hint=problem.fix) from None
    clashes = overlapping(subnet, occupied)
    if clashes:
        raise SubnetError(
            f"{subnet} overlaps {describe(clashes)}",
            hint="choose a subnet that overlaps nothing, or use 'auto' to let scaffold pick one",
        )


def _start_index(project: str, salt: str, count: int) -> int:
    """A stable starting point per project, so re-running gives the same answer."""
    digest = hashlib.sha256(f"{salt}:{project}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def v4_candidates(project: str) -> Iterator[IPv4Network]:
    """Every /28 of the pools, starting at the project's own stable offset in each pool."""
    for pool in AUTO_V4_POOLS:
        count = 2 ** (AUTO_V4_PREFIX - pool.prefixlen)
        start = _start_index(project, "v4", count)
        size = 2 ** (32 - AUTO_V4_PREFIX)
        base = int(pool.network_address)
        for step in range(count):
            offset = ((start + step) % count) * size
            yield IPv4Network((base + offset, AUTO_V4_PREFIX))


def v6_candidates(project: str) -> Iterator[IPv6Network]:
    """/64s of one unique-local /48 whose 40-bit global ID comes from the project name."""
    global_id = _start_index(project, "v6-global", 2**40)
    prefix48 = (0xFD << 120) | (global_id << 80)
    start = _start_index(project, "v6-subnet", 2**16)
    for step in range(2**16):
        subnet_id = (start + step) % 2**16
        yield IPv6Network((prefix48 | (subnet_id << 64), AUTO_V6_PREFIX))


def choose_free(candidates: Iterable[Network], occupied: Iterable[Occupied]) -> Network:
    """The first candidate that overlaps nothing."""
    taken = list(occupied)
    for candidate in candidates:
        if not overlapping(candidate, taken):
            return candidate
    raise SubnetError(
        "every candidate subnet overlaps a Docker network or a route of this host",
        hint="pin a free subnet yourself: `copier update --data proxy_subnet=<CIDR>` or `# pinned` in .env",
    )


def docker_default_gateway(subnet: Network) -> IPAddress:
    """The gateway Docker's default IPAM driver gives a subnet whose IPAM config names none.

    It takes the first host address, for IPv4 and IPv6 alike, and (Docker 20.10 at least) does not
    write it back into the network's IPAM config, so it cannot always be read from Docker.
    """
    return subnet.network_address + 1


def without_gateway(subnet: Network, gateway: IPAddress) -> list[Network]:
    """Every address of `subnet` but `gateway`, as the fewest CIDRs, in address order."""
    if gateway.version != subnet.version or gateway not in subnet:
        return [subnet]
    return sorted(subnet.address_exclude(ipaddress.ip_network(gateway)))  # type: ignore[arg-type]


def trusted_ranges(subnets: Iterable[Network], gateways: Iterable[IPAddress] = ()) -> list[Network]:
    """The addresses authentik must trust: each proxy subnet without its gateway.

    The gateway is the Docker host's own address on the bridge. Any process on the host (and every
    `network_mode: host` container, common for Home Assistant) that connects to authentik's address
    on the proxy network comes from it, so trusting it would let them set X-Forwarded-For/-Proto.
    Only containers attached to the network (nginx, and authentik itself) have the other addresses.

    Why "the subnet without its gateway" and not "nginx's pinned address (/32)": it follows from
    what Docker reports about the network alone, so it needs no address reserved in compose.yaml,
    no recreation of nginx, holds for a pre-existing network, a subnet the user pinned and a second
    proxy the user attaches to the network, and migrates a `.env` written before by a plain
    `scaffold detect`. The price is size: a /28 without its first host is 4 CIDRs, an IPv6 /64 is
    64 (about 1.8 KB), which authentik's comma-separated list takes as it is.

    `gateways` are the gateways Docker reports; a subnet without one has Docker's default.
    """
    reported = list(gateways)
    return [item for subnet in subnets for item in without_gateway(subnet, gateway_of(subnet, reported))]


def gateway_of(subnet: Network, reported: Iterable[IPAddress] = ()) -> IPAddress:
    """The gateway Docker reports inside `subnet`, else the one its default IPAM driver picks."""
    return next(
        (g for g in reported if g.version == subnet.version and g in subnet), docker_default_gateway(subnet)
    )


def uncovered(ranges: Iterable[Network], cidrs: Iterable[Network]) -> list[Network]:
    """The ranges that the union of `cidrs` does not contain completely."""
    cidrs = list(cidrs)
    merged: list[Network] = []
    for version in (4, 6):
        merged += ipaddress.collapse_addresses([c for c in cidrs if c.version == version])
    return [r for r in ranges if not any(r.version == m.version and r.subnet_of(m) for m in merged)]


def trusted_gateways(cidrs: Iterable[Network], gateways: Iterable[IPAddress]) -> list[IPAddress]:
    """The gateways that a trusted-CIDR list lets speak for clients."""
    cidrs = list(cidrs)
    return [g for g in gateways if any(g.version == c.version and g in c for c in cidrs)]


def trusted_cidrs(ranges: Iterable[Network]) -> str:
    """authentik's format: comma-separated CIDRs, no spaces, no JSON."""
    return ",".join(str(item) for item in ranges)


def parse_trusted_cidrs(value: str) -> tuple[list[Network], list[str]]:
    """Parse a trusted-CIDR list as authentik does: split on commas, trim, skip what does not parse.

    Returns the networks and the entries authentik would silently skip (so we can say so).
    """
    networks: list[Network] = []
    skipped: list[str] = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            skipped.append(entry)
    return networks, skipped
