"""What the `upstream_proxies` answer means: the proxies in front of nginx that may tell it the client's
address, and the real-IP directives nginx reads them from.

proxy.real-ip compares the answer with nginx's files; stack.public-url and stack.client-address use the
ranges it names. Context caches the parsed answer (`ctx.upstream_answer`, `ctx.trusted_upstream`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from scaffold.answer_rules import CLOUDFLARE, split_upstream_proxies
from scaffold.subnets import Network

ANSWER = "upstream_proxies"
CLOUDFLARE_CONF = "nginx/snippets/cloudflare-ranges.conf"
XFF, CF_HEADER = "X-Forwarded-For", "CF-Connecting-IP"
_DIRECTIVE = re.compile(
    r"(?<![\w$.-])(set_real_ip_from|real_ip_header|real_ip_recursive|include)\s+([^;{}]*?)\s*;"
)


@dataclass(frozen=True)
class UpstreamAnswer:
    """The `upstream_proxies` answer: address ranges, whether `cloudflare` is listed, and junk."""

    ranges: tuple[Network, ...] = ()
    cloudflare: bool = False
    unreadable: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.ranges or self.cloudflare or self.unreadable)

    @property
    def header(self) -> str:
        """The header the template reads the client's address from for this answer."""
        return CF_HEADER if self.cloudflare else XFF


def parse_upstream_proxies(value: object) -> UpstreamAnswer:
    """The answer as found on disk (maybe hand-edited): unlike the question's rule, junk is collected
    and host bits are ignored (as nginx does), so doctor can report them instead of stopping."""
    items = split_upstream_proxies(value)
    parsed = [(item, parse_range(item)) for item in items if item.lower() != CLOUDFLARE]
    return UpstreamAnswer(
        ranges=tuple(dict.fromkeys(network for _, network in parsed if network is not None)),
        cloudflare=len(parsed) < len(items),
        unreadable=tuple(item for item, network in parsed if network is None),
    )


def parse_range(text: str) -> Network | None:
    """An address or CIDR as nginx reads it (host bits ignored), None for anything else."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def directives(text: str) -> list[tuple[str, str, int]]:
    """(name, argument, brace depth) of each real-IP directive and `include` in `text`."""
    text = re.sub(r"(?m)#.*$", "", text)
    found = []
    for match in _DIRECTIVE.finditer(text):
        before = text[: match.start()]
        depth = before.count("{") - before.count("}")
        found.append((match.group(1), match.group(2).strip().strip("\"'"), depth))
    return found


def read_text(path: Path) -> str | None:
    """The text of a project file, None when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def trusted_upstream(root: Path, answer: UpstreamAnswer) -> list[Network]:
    """The ranges upstream_proxies means, Cloudflare's (from the project's file) included."""
    ranges = list(answer.ranges)
    if answer.cloudflare:
        text = read_text(root / CLOUDFLARE_CONF) or ""
        for name, value, _ in directives(text):
            network = parse_range(value) if name == "set_real_ip_from" else None
            if network is not None:
                ranges.append(network)
    return ranges
