"""Subnet choice and checks, without Docker: what a user would get for given occupied ranges."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from scaffold.errors import SubnetError
from scaffold.subnets import (
    AUTO_V4_PREFIX,
    Occupied,
    check_user_subnet,
    choose_free,
    gateway_of,
    parse_subnet,
    parse_trusted_cidrs,
    trusted_cidrs,
    trusted_gateways,
    trusted_ranges,
    uncovered,
    v4_candidates,
    v6_candidates,
)


def occ(*cidrs: str) -> list[Occupied]:
    return [Occupied(ipaddress.ip_network(c), f"net {c}") for c in cidrs]


def test_auto_subnet_is_stable_per_project_and_differs_between_projects():
    first = choose_free(v4_candidates("authentik"), [])
    again = choose_free(v4_candidates("authentik"), [])
    other = choose_free(v4_candidates("homelab-sso"), [])
    assert first == again
    assert first != other
    assert first.prefixlen == AUTO_V4_PREFIX
    assert first.subnet_of(ipaddress.IPv4Network("10.128.0.0/9"))


def test_auto_subnet_skips_every_occupied_range():
    wanted = choose_free(v4_candidates("authentik"), [])
    taken = occ(str(wanted), "10.0.0.0/16", "172.17.0.0/16", "192.168.0.0/20")
    chosen = choose_free(v4_candidates("authentik"), taken)
    assert chosen != wanted
    assert not any(chosen.overlaps(item.network) for item in taken)


def test_auto_subnet_falls_back_to_other_private_pools_when_upper_10_is_routed():
    chosen = choose_free(v4_candidates("authentik"), occ("10.128.0.0/9"))
    assert chosen.is_private
    assert not chosen.overlaps(ipaddress.IPv4Network("10.128.0.0/9"))


def test_no_free_subnet_is_an_error_that_says_how_to_pin():
    with pytest.raises(SubnetError) as info:
        choose_free(itertools.islice(v4_candidates("x"), 3), occ("0.0.0.0/1", "128.0.0.0/1"))
    assert "pin" in (info.value.hint or "")


def test_v6_candidates_are_unique_local_64s_stable_per_project():
    first = next(v6_candidates("authentik"))
    assert first == next(v6_candidates("authentik"))
    assert first.prefixlen == 64
    assert first.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert first != next(v6_candidates("other"))


@pytest.mark.parametrize(
    ("cidr", "words"),
    [
        ("8.8.8.0/24", "not a private range"),
        ("10.0.0.0/8", "/8"),
        ("10.1.2.0/30", "/30"),
        ("2001:db8::/64", "unique-local"),
        ("fd12::/32", "/32"),
    ],
)
def test_user_subnet_refused_with_reason(cidr, words):
    with pytest.raises(SubnetError) as info:
        check_user_subnet(parse_subnet(cidr), [])
    assert words in info.value.message
    assert info.value.hint


def test_user_subnet_that_overlaps_names_the_owner():
    with pytest.raises(SubnetError) as info:
        check_user_subnet(parse_subnet("10.5.0.0/28"), occ("10.5.0.0/16"))
    assert "10.5.0.0/16" in info.value.message and "net 10.5.0.0/16" in info.value.message


def test_user_subnet_accepted_when_private_small_and_free():
    check_user_subnet(parse_subnet("192.168.77.0/28"), occ("192.168.1.0/24"))


@pytest.mark.parametrize("text", ["10.0.0.1/24", "banana", "10.0.0.0/33", ""])
def test_parse_subnet_rejects_non_networks_with_a_hint(text):
    with pytest.raises(SubnetError) as info:
        parse_subnet(text)
    assert "CIDR" in info.value.message and info.value.hint


def test_trusted_cidrs_is_authentiks_comma_format_without_spaces():
    value = trusted_cidrs([ipaddress.ip_network("10.1.2.0/28"), ipaddress.ip_network("fd00:1::/64")])
    assert value == "10.1.2.0/28,fd00:1::/64"


def test_parse_trusted_cidrs_like_authentik_skips_json_and_junk():
    networks, skipped = parse_trusted_cidrs('["10.1.2.0/28"]')
    assert networks == [] and skipped == ['["10.1.2.0/28"]']
    networks, skipped = parse_trusted_cidrs(" 10.1.2.0/28 , nonsense,fd00::/64")
    assert [str(n) for n in networks] == ["10.1.2.0/28", "fd00::/64"]
    assert skipped == ["nonsense"]


# --- what authentik trusts: the proxy network without its gateway (the Docker host) -------------


def ips(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address(t) for t in texts]


def covered_addresses(ranges) -> set:
    return {address for item in ranges for address in item}


def test_trusted_ranges_leave_out_only_the_default_gateway():
    subnet = ipaddress.ip_network("10.203.7.0/28")
    ranges = trusted_ranges([subnet])
    assert trusted_cidrs(ranges) == "10.203.7.0/32,10.203.7.2/31,10.203.7.4/30,10.203.7.8/29"
    assert covered_addresses(ranges) == set(subnet) - {ipaddress.ip_address("10.203.7.1")}


def test_trusted_ranges_follow_the_gateway_docker_reports():
    """A pre-existing network whose gateway is not the first host: that address is left out."""
    subnet = ipaddress.ip_network("192.168.77.0/24")
    ranges = trusted_ranges([subnet], ips("192.168.77.254", "10.0.0.1"))
    assert covered_addresses(ranges) == set(subnet) - set(ips("192.168.77.254"))
    assert ipaddress.ip_address("192.168.77.1") in covered_addresses(ranges)


def test_trusted_ranges_for_an_ipv6_64_are_64_cidrs_without_the_gateway():
    v4, v6 = ipaddress.ip_network("10.1.2.0/28"), ipaddress.ip_network("fd12:3456:789a:1::/64")
    ranges = trusted_ranges([v4, v6])
    v6_ranges = [r for r in ranges if r.version == 6]
    assert len(v6_ranges) == 64
    assert not any(ipaddress.ip_address("fd12:3456:789a:1::1") in r for r in v6_ranges)
    assert sum(r.num_addresses for r in v6_ranges) == v6.num_addresses - 1
    # authentik's parser (split on commas) reads every entry back.
    networks, skipped = parse_trusted_cidrs(trusted_cidrs(ranges))
    assert networks == ranges and skipped == []


def test_default_gateway_is_the_first_host_as_with_docker():
    assert gateway_of(ipaddress.ip_network("10.1.2.16/28")) == ipaddress.ip_address("10.1.2.17")
    v6 = ipaddress.ip_network("fd00:1::/64")
    assert gateway_of(v6, ips("10.0.0.1")) == ipaddress.ip_address("fd00:1::1")


def test_coverage_counts_the_union_of_the_trusted_cidrs():
    ranges = trusted_ranges([ipaddress.ip_network("10.1.2.0/28")])
    halves = [ipaddress.ip_network("10.1.2.0/29"), ipaddress.ip_network("10.1.2.8/29")]
    assert uncovered(ranges, halves) == []
    assert uncovered(ranges, halves[:1]) == [ipaddress.ip_network("10.1.2.8/29")]
    assert trusted_gateways(halves, ips("10.1.2.1")) == ips("10.1.2.1")
    assert trusted_gateways(ranges, ips("10.1.2.1")) == []
