"""doctor's trust checks: does authentik believe exactly nginx's proxy headers, and nobody else's?

authentik honours X-Forwarded-* only from peers inside AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS, read
as a comma-separated list whose unparsable entries are silently skipped (a JSON list therefore trusts
nobody). Too narrow and authentik sees every client as nginx and builds http:// URLs; too broad and any
container or LAN host can claim any client address. The right value is the proxy network without
its gateway: the gateway is the Docker host itself (see `scaffold.subnets.trusted_ranges`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from scaffold import envkeys
from scaffold.doctor.core import (
    Check,
    Context,
    Outcome,
    fail,
    ok,
    running_or_skip,
    skip,
    warn,
)
from scaffold.subnets import (
    IPAddress,
    Network,
    gateway_of,
    parse_trusted_cidrs,
    trusted_cidrs,
    trusted_gateways,
    trusted_ranges,
    uncovered,
)

KEY = envkeys.TRUSTED_CIDRS
#: Ranges that trust far more than one Docker network: everything, and the whole private ranges
#: (authentik's old default list, and what copied snippets often use).
BROAD_RANGES: tuple[Network, ...] = tuple(
    ipaddress.ip_network(text)
    for text in ("0.0.0.0/0", "::/0", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
APPLY = "then `docker compose up -d` (it recreates authentik with the new value)"


def looks_like_json(value: str) -> bool:
    return value.strip()[:1] in ("[", "{", '"')


def json_entries(value: str) -> list[str]:
    """The CIDRs a JSON-looking value was meant to hold."""
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    if isinstance(data, list):
        return [str(item).strip() for item in data if str(item).strip()]
    return re.findall(r"[0-9A-Fa-f:.]+/\d{1,3}", value)


def excess_ranges(cidrs: list[Network], subnets: list[Network]) -> list[tuple[Network, str]]:
    """Each trusted range that reaches beyond the proxy network's subnets, with what it is.

    A range inside a subnet (e.g. nginx's own /32) is fine; a broad range is named even when the
    subnets are unknown.
    """
    found: list[tuple[Network, str]] = []
    for cidr in cidrs:
        if cidr.prefixlen == 0:
            found.append((cidr, "every address"))
            continue
        broad = [b for b in BROAD_RANGES if b.version == cidr.version and b.prefixlen and b.subnet_of(cidr)]
        if broad:
            found.append((cidr, f"all of the private range {broad[0]}"))
            continue
        same = [s for s in subnets if s.version == cidr.version]
        if not same:
            continue
        if any(cidr.subnet_of(s) for s in same):
            continue
        wider = [s for s in same if s.subnet_of(cidr)]
        if wider:
            extra = cidr.num_addresses - sum(s.num_addresses for s in wider)
            found.append((cidr, f"broader than the proxy network {wider[0]}: {extra} more addresses"))
        else:
            found.append((cidr, "not the proxy network"))
    return found


@dataclass(frozen=True)
class Subnets:
    """The proxy network's subnets and where they were read."""

    networks: list[Network]
    source: str
    from_docker: bool
    #: Gateways Docker reports (none before the network exists: Docker's default applies).
    reported_gateways: tuple[IPAddress, ...] = ()

    @property
    def gateways(self) -> list[IPAddress]:
        return [gateway_of(net, self.reported_gateways) for net in self.networks]

    @property
    def ranges(self) -> list[Network]:
        """What authentik must trust: every address of the network but its gateway."""
        return trusted_ranges(self.networks, self.reported_gateways)

    def describe(self) -> str:
        """`10.1.2.0/28 (without its gateway 10.1.2.1)` for messages."""
        return ", ".join(
            f"{net} (without its gateway {gw})" for net, gw in zip(self.networks, self.gateways, strict=True)
        )


def proxy_subnets(ctx: Context) -> Subnets | None:
    """Docker's view when the network exists, else what .env will make Compose create."""
    network = ctx.proxy_network
    if network is not None and network.subnets:
        return Subnets(list(network.subnets), f"Docker's network '{network.name}'", True, network.gateways)
    found: list[Network] = []
    keys = [envkeys.PROXY_SUBNET] + ([envkeys.PROXY_SUBNET_V6] if ctx.answers.enable_ipv6 else [])
    for key in keys:
        value = ctx.env_value(key)
        if value is None:
            continue
        try:
            found.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            continue
    if not found:
        return None
    why = "the network does not exist yet" if ctx.docker is not None else "Docker cannot be asked"
    return Subnets(found, f"{' and '.join(keys)} in .env ({why})", False)


def parsed_cidrs(ctx: Context) -> tuple[str | None, list[Network], list[str]]:
    value = ctx.env_value(KEY)
    if value is None:
        return None, [], []
    networks, skipped = parse_trusted_cidrs(value)
    return value, networks, skipped


def _good_value(ctx: Context, fallback: list[str] | None = None) -> str:
    subnets = proxy_subnets(ctx)
    if subnets is not None:
        return trusted_cidrs(subnets.ranges)
    return ",".join(fallback or []) or "<the proxy network's subnet, e.g. 10.203.7.0/28>"


def _set_fix(ctx: Context, value: str) -> str:
    """How to give KEY `value`, respecting a `# pinned` line."""
    if ctx.env is not None and ctx.env.is_pinned(KEY):
        return (
            f"write `{KEY}={value}  # pinned` in .env (or delete the line and run `scaffold detect` to let "
            f"scaffold manage it), {APPLY}"
        )
    return f"run `scaffold detect` (it sets `{KEY}={value}` from Docker), {APPLY}"


def check_cidrs_format(ctx: Context) -> Outcome:
    value, networks, skipped = parsed_cidrs(ctx)
    if value is None:
        return skip(f"not checked: {KEY} is not set (see files.env-keys)")
    if looks_like_json(value):
        good = _good_value(ctx, json_entries(value))
        return fail(
            f"{KEY} is written as JSON ({value}): authentik reads a comma-separated list and silently skips "
            "what it cannot parse, so it trusts no proxy at all (endless spinner, http:// URLs, wrong "
            "client addresses)",
            f"write it comma-separated, without brackets or quotes: `{KEY}={good}` "
            f"(or delete the line and run `scaffold detect`), {APPLY}",
        )
    if skipped:
        good = trusted_cidrs(networks) if networks else _good_value(ctx)
        return fail(
            f"{KEY}: authentik silently skips {', '.join(skipped)} (not a CIDR)"
            + ("" if networks else ", so it trusts no proxy at all"),
            f"correct or remove them: `{KEY}={good}`, {APPLY}",
        )
    if not networks:
        return fail(f"{KEY} holds no network", _set_fix(ctx, _good_value(ctx)))
    subnets = proxy_subnets(ctx)
    if subnets is not None and networks == subnets.ranges:  # an IPv6 /64 alone is 64 CIDRs
        return ok(f"authentik reads {KEY} as {subnets.describe()}: {len(networks)} CIDRs")
    return ok(f"authentik reads {KEY} as {', '.join(str(n) for n in networks)}")


def _cidrs_unusable(ctx: Context) -> Outcome | None:
    value, networks, _ = parsed_cidrs(ctx)
    if value is None:
        return skip(f"not checked: {KEY} is not set (see files.env-keys)")
    if not networks:
        return skip(f"not checked: {KEY} holds no network authentik can read (see trust.cidrs-format)")
    return None


def check_cidrs_cover_network(ctx: Context) -> Outcome:
    if (blocked := _cidrs_unusable(ctx)) is not None:
        return blocked
    value, networks, _ = parsed_cidrs(ctx)
    subnets = proxy_subnets(ctx)
    if subnets is None:
        return skip("not checked: the proxy network does not exist and PROXY_SUBNET is not set")
    missing = uncovered(subnets.ranges, networks)
    if missing:
        return fail(
            f"{KEY}={value} does not cover {', '.join(map(str, missing))} of the proxy network "
            f"{subnets.describe()} (from {subnets.source}), where nginx may be: authentik ignores nginx's "
            "X-Forwarded-* headers, sees every client as nginx and builds http:// URLs",
            _set_fix(ctx, trusted_cidrs(subnets.ranges)),
        )
    return ok(f"{KEY} covers the proxy network {subnets.describe()} (from {subnets.source})")


def check_cidrs_not_broad(ctx: Context) -> Outcome:
    if (blocked := _cidrs_unusable(ctx)) is not None:
        return blocked
    _, networks, _ = parsed_cidrs(ctx)
    subnets = proxy_subnets(ctx)
    extra = excess_ranges(networks, subnets.networks if subnets else [])
    gateways = trusted_gateways(networks, subnets.gateways) if subnets else []
    problems = []
    if extra:
        named = "; ".join(f"{net} ({what})" for net, what in extra)
        problems.append(
            f"{KEY} trusts more than nginx's network: {named}. Any host or container there can set "
            "X-Forwarded-For and choose the client address authentik logs and rate-limits"
        )
    if gateways:
        problems.append(
            f"{KEY} trusts the proxy network's gateway {', '.join(map(str, gateways))}, which is the Docker "
            "host itself: any process on the host (every `network_mode: host` container too) can connect "
            "to authentik, send X-Forwarded-For/-Proto and be believed"
        )
    if problems:
        return warn(
            ". ".join(problems),
            f"trust only the proxy network without its gateway: {_set_fix(ctx, _good_value(ctx))}",
        )
    if subnets is None:
        return ok(f"{KEY} names no broad range (the proxy network is not known yet)")
    return ok(f"{KEY} trusts nothing beyond the proxy network, and not its gateway")


def check_subnet_matches_env(ctx: Context) -> Outcome:
    if ctx.docker is None:
        return skip("not checked: the Docker daemon cannot be used (see stack.docker)")
    network = ctx.proxy_network
    if network is None:
        return skip(
            f"not checked: Docker has no proxy network for project '{ctx.project}' yet "
            "(`docker compose up -d` creates it from PROXY_SUBNET)"
        )
    families = [(envkeys.PROXY_SUBNET, 4)] + (
        [(envkeys.PROXY_SUBNET_V6, 6)] if ctx.answers.enable_ipv6 else []
    )
    problems: list[str] = []
    fixes: list[str] = []
    for key, version in families:
        actual = [s for s in network.subnets if s.version == version]
        text = ctx.env_value(key)
        if text is None:
            continue
        try:
            wanted: Network | None = ipaddress.ip_network(text, strict=False)
        except ValueError:
            wanted = None
        if wanted is not None and wanted in actual:
            continue
        have = ", ".join(map(str, actual)) or f"no IPv{version} subnet"
        problems.append(f"{key} in .env is {text} but Docker's network '{network.name}' has {have}")
        pinned = ctx.env is not None and ctx.env.is_pinned(key)
        if pinned or not actual:
            fixes.append(
                "recreate the network from .env: `docker compose down && docker compose up -d` (volumes "
                "and data are kept)" + (f", or change the pin to {actual[0]}" if actual else "")
            )
        else:
            fixes.append(
                f"run `scaffold detect` (it sets {key} to Docker's {actual[0]}), or recreate the network "
                "with .env's value: `docker compose down && docker compose up -d` (volumes and data are kept)"
            )
    if problems:
        return fail(
            "; ".join(problems) + ": the next `docker compose up` fails or trusts the wrong network",
            "; ".join(dict.fromkeys(fixes)),
        )
    return ok(f"Docker's network '{network.name}' has {', '.join(map(str, network.subnets))}, as .env says")


def check_nginx_address(ctx: Context) -> Outcome:
    if isinstance(nginx := running_or_skip(ctx, "nginx"), Outcome):
        return nginx
    network = ctx.proxy_network
    if network is None:
        return skip("not checked: Docker has no proxy network for this project")
    attached = nginx.networks.get(network.name)
    if not attached:
        return fail(
            f"nginx is not attached to the proxy network '{network.name}': it cannot reach authentik",
            "restore the `networks:` of the nginx service in compose.yaml (`git diff compose.yaml`), then "
            "`docker compose up -d`",
        )
    addresses = [address for address in (attached.ipv4, attached.ipv6) if address is not None]
    server = ctx.running("server")
    if server is not None and KEY in server.env:
        source, value = "the running authentik server", server.env[KEY]
    else:
        source, value = ".env (the server is not running)", ctx.env_value(KEY) or ""
    networks, _ = parse_trusted_cidrs(value)
    outside = [a for a in addresses if not any(a.version == n.version and a in n for n in networks)]
    shown = ", ".join(map(str, addresses)) or "none"
    if not addresses:
        return warn(f"nginx has no address on '{network.name}'", "`docker compose up -d nginx`")
    if outside:
        return fail(
            f"nginx's address {', '.join(map(str, outside))} on '{network.name}' is outside the trusted "
            f"CIDRs of {source} ({value or 'empty'}): authentik ignores nginx's proxy headers",
            _set_fix(ctx, _good_value(ctx)),
        )
    return ok(f"nginx's address {shown} on '{network.name}' is trusted by {source}")


CHECKS = (
    Check("trust.cidrs-format", check_cidrs_format),
    Check("trust.cidrs-cover-network", check_cidrs_cover_network),
    Check("trust.cidrs-not-broad", check_cidrs_not_broad),
    Check("trust.subnet-matches-env", check_subnet_matches_env),
    Check("trust.nginx-address", check_nginx_address),
)
