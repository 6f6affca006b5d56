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

from scaffold.answer_rules import AnswerProblem, IPv4Network, IPv6Network, Network, check_proxy_network
from scaffold.errors import SubnetError

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


def trusted_cidrs(subnets: Iterable[Network]) -> str:
    """authentik's format: comma-separated CIDRs, no spaces, no JSON."""
    return ",".join(str(subnet) for subnet in subnets)


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
