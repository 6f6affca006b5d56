"""The upstream_proxies question's validator agrees with Python's `ipaddress` on every range it sees.

The validator is Jinja (so a plain `copier copy` checks answers too), which makes address arithmetic
easy to get subtly wrong. Here it is rendered the way copier renders validators (Jinja's sandbox
with the Ansible core filters copier loads by default) against a few thousand generated ranges, and
each verdict, and each suggested network, is compared with what `ipaddress` says. The end-to-end
refusals through `scaffold new` are in test_template.py.
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from jinja2.sandbox import SandboxedEnvironment
from jinja2_ansible_filters import AnsibleCoreFiltersExtension
from ruamel.yaml import YAML
from stack import REPO_ROOT

IPv4_BROADEST, IPv6_BROADEST = 8, 16  # what the question accepts at most, as its help says


@pytest.fixture(scope="module")
def verdict():
    """The question's validator as a function: the answer in, the error message ('' = ok) out."""
    questions = YAML(typ="safe").load((REPO_ROOT / "copier.yml").read_text())
    template = SandboxedEnvironment(extensions=[AnsibleCoreFiltersExtension]).from_string(
        questions["upstream_proxies"]["validator"]
    )
    return lambda answer: template.render(upstream_proxies=answer).strip()


def generated_ranges(seed: int, count: int) -> list[str]:
    """Addresses and CIDRs of both families in the forms people write: compressed, exploded,
    with and without host bits, down to single addresses."""
    rng = random.Random(seed)
    answers = []
    for _ in range(count):
        version = rng.choice((4, 6))
        bits = 32 if version == 4 else 128
        value = rng.getrandbits(bits)
        if rng.random() < 0.5:  # a run of zero bits, so that '::' lands anywhere
            start, length = rng.randrange(bits), rng.randrange(bits)
            value &= ~(((1 << length) - 1) << start) & ((1 << bits) - 1)
        family = ipaddress.IPv6Address if version == 6 else ipaddress.IPv4Address
        address = family(value)
        prefix = rng.randrange(0, bits + 1)
        if rng.random() < 0.5:  # a network written correctly
            address = ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address
        text = address.exploded if rng.random() < 0.3 else address.compressed
        answers.append(text if rng.random() < 0.15 else f"{text}/{prefix}")
    return answers


def expected(answer: str) -> tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network | None]:
    """('ok' | 'too broad' | 'host bits', the network meant)."""
    network = ipaddress.ip_network(answer, strict=False)
    broadest = IPv4_BROADEST if network.version == 4 else IPv6_BROADEST
    if network.prefixlen < broadest:
        return "too broad", None
    try:
        ipaddress.ip_network(answer, strict=True)
    except ValueError:
        return "host bits", network
    return "ok", network


@pytest.mark.parametrize("seed", range(4))
def test_validator_agrees_with_ipaddress(verdict, seed: int) -> None:
    checked = {"ok": 0, "too broad": 0, "host bits": 0}
    for answer in generated_ranges(seed, 600):
        kind, network = expected(answer)
        message = verdict(answer)
        checked[kind] += 1
        if kind == "ok":
            assert message == "", f"{answer!r} is a valid network but was refused: {message}"
        elif kind == "too broad":
            assert "every IPv" in message or "far broader than any proxy" in message, (answer, message)
        else:
            assert "has host bits set" in message, (answer, message)
            suggested = message.split("did you mean ", 1)[1].split(" ", 1)[0]
            assert ipaddress.ip_network(suggested) == network, (answer, message)
    print(f"seed {seed}: {checked}")
    assert min(checked.values()) > 50, f"the generated cases miss a kind: {checked}"


@pytest.mark.parametrize(
    "answer",
    [
        "2001:db8:::1",
        "2001:db8::1::",
        "1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:8:9",
        "12345::",
        "2001:db8::g",
        ":1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:",
        "2001:db8::/129",
        "192.0.2.256",
        "192.0.2",
        "192.0.2.0/33",
        "192.0.2.0/",
        "192.0.2.0/24/8",
    ],
)
def test_malformed_ranges_are_refused(verdict, answer: str) -> None:
    with pytest.raises(ValueError):
        ipaddress.ip_network(answer, strict=False)
    assert verdict(answer), f"{answer!r} was accepted"


def test_every_item_of_a_list_is_checked(verdict) -> None:
    assert verdict("192.0.2.10, 2001:db8::/48 cloudflare") == ""
    message = verdict("192.0.2.10, 2001:db8::1/48, cloudflare")
    assert "'2001:db8::1/48' has host bits set: did you mean 2001:db8:0::/48" in message
