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
    parse_subnet,
    parse_trusted_cidrs,
    trusted_cidrs,
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
