"""The host's own routes, so an automatic subnet never hides a LAN, VPN or other route.

Read from /proc (Linux), which lists every connected network and static route, so the
addresses of the host are covered too. Only meaningful when the Docker daemon runs on this
host: for a remote daemon the caller skips it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

from scaffold.subnets import Occupied

PROC_ROUTE_V4 = Path("/proc/net/route")
PROC_ROUTE_V6 = Path("/proc/net/ipv6_route")


def _v4_routes(text: str) -> list[Occupied]:
    routes: list[Occupied] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest_hex, mask_hex = fields[0], fields[1], fields[7]
        try:
            dest = socket.inet_ntoa(struct.pack("<I", int(dest_hex, 16)))
            mask = socket.inet_ntoa(struct.pack("<I", int(mask_hex, 16)))
            network = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        except (ValueError, struct.error):
            continue
        if network.prefixlen == 0:  # the default route overlaps everything by definition
            continue
        routes.append(Occupied(network, f"host route via {iface}"))
    return routes


def _v6_routes(text: str) -> list[Occupied]:
    routes: list[Occupied] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        dest_hex, prefix_hex, iface = fields[0], fields[1], fields[9]
        try:
            prefix = int(prefix_hex, 16)
            network = ipaddress.IPv6Network((int(dest_hex, 16), prefix), strict=False)
        except ValueError:
            continue
        if (
            prefix == 0
            or network.is_link_local
            or network.is_loopback
            or network.is_multicast
            or prefix == 128
        ):
            continue
        routes.append(Occupied(network, f"host route via {iface}"))
    return routes


def host_routes() -> list[Occupied]:
    """Every non-default IPv4 and IPv6 route of this host (empty where /proc has none)."""
    routes: list[Occupied] = []
    for path, parse in ((PROC_ROUTE_V4, _v4_routes), (PROC_ROUTE_V6, _v6_routes)):
        try:
            routes.extend(parse(path.read_text()))
        except OSError:
            continue
    return routes
