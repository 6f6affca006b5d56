"""The answer rules (scaffold/answer_rules.py), called directly: every bad answer refused with its reason,
good answers accepted, and the network rules checked against Python's `ipaddress` on generated input.

That copier.yml's validators call exactly these rules is test_template_rendering.py's job; a few whole
`scaffold new` / `scaffold update` refusals are in test_template.py.
"""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaffold.answer_rules import (
    BROADEST_UPSTREAM_PREFIX,
    PRIVATE_V4,
    RULES,
    ULA,
    V4_PREFIX_RANGE,
    V6_PREFIX_RANGE,
    answer_problems,
    compose_string,
    default_project_name,
    parse_upstream_proxies,
    problem_with,
)
from tests.helpers.answerdata import GOOD_ANSWERS, VALID_TEXT_ANSWERS

#: (question, answer, other answers, words the message must contain)
from tests.helpers.answerdata import ON_DOMAIN as _ON_DOMAIN

BAD_ANSWERS = [
    ("backup_schedule", "daily\nExecStart=/bin/sh", {}, "not a systemd calendar time"),
    ("backup_schedule", "daily;reboot", {}, "not a systemd calendar time"),
    ("backup_keep", 0, {"backup_schedule": "daily"}, "keep at least 1 archive"),
    ("outpost_docker_socket", True, {"target": "swarm"}, "does not support"),
    ("public_url", "http://sso.example.test", _ON_DOMAIN, "is not an https URL"),
    ("public_url", "sso.example.test", _ON_DOMAIN, "is not an https URL"),
    ("public_url", "https://sso.example.test/auth/", _ON_DOMAIN, "more than a host and port"),
    ("public_url", "https://sso.example.test/", _ON_DOMAIN, "more than a host and port"),
    ("public_url", "https://other.example.test", _ON_DOMAIN, "is not on the domain sso.example.test"),
    ("public_url", "https://SSO.example.test", _ON_DOMAIN, "is not on the domain sso.example.test"),
    ("public_url", "https://sso.example.test:0", _ON_DOMAIN, "no valid port"),
    ("public_url", "https://sso.example.test:70000", _ON_DOMAIN, "no valid port"),
    ("public_url", "https://sso.example.test:", _ON_DOMAIN, "no valid port"),
    ("public_url", "https://sso.example.test:443", _ON_DOMAIN, "leave out :443"),
    ("public_url", "https://user@sso.example.test", _ON_DOMAIN, "more than a host and port"),
    ("project_name", "", {}, "is empty"),
    ("project_name", "My Stack", {}, "not a valid Compose project name"),
    ("project_name", "-stack", {}, "not a valid Compose project name"),
    ("project_name", "stack\n", {}, "not a valid Compose project name"),
    ("project_name", "a" * 64, {}, "at most 63"),
    ("domain", "", {}, "is required"),
    ("domain", "https://sso.example.com", {}, "has a scheme: give only the host name, e.g. sso.example.com"),
    ("domain", "*.example.com", {}, "is a wildcard"),
    ("domain", "sso.example.com/auth", {}, "has a path"),
    ("domain", "sso.example.com:8443", {}, "has a port"),
    ("domain", "SSO.example.com", {}, "upper-case"),
    ("domain", "localhost", {}, "not a valid host name"),
    ("domain", "sso..example.com", {}, "not a valid host name"),
    ("domain", "sso.example.com;", {}, "not a valid host name"),
    ("domain", "sso.example.test\n", {}, "'sso.example.test\\n' has spaces or a line break"),
    ("domain", "sso example.com", {}, "has spaces"),
    ("acme_email", "admin", {}, "not a valid e-mail address"),
    ("acme_email", 'a"b@example.test', {}, "not a valid e-mail address"),
    ("acme_email", "a\\b@example.test", {}, "not a valid e-mail address"),
    ("acme_email", "a b@example.test", {}, "not a valid e-mail address"),
    ("acme_email", "admin@example.test\n", {}, "not a valid e-mail address"),
    ("acme_email", "admin@localhost", {}, "not a valid e-mail address"),
    ("acme_accept_no_email", False, {"acme_email": ""}, "No ACME e-mail given"),
    ("acme_server", "http://acme.example.test/dir", {}, "nor an https URL"),
    ("acme_server", "zerossl", {}, "nor an https URL"),
    ("acme_server", 'https://acme.example.test/"dir', {}, "nor an https URL"),
    ("acme_server", "https://acme.example.test/dir\n", {}, "nor an https URL"),
    ("acme_server", "https://acme.example.test/a b", {}, "nor an https URL"),
    ("acme_server", "https://acme.example.test/dir#frag", {}, "nor an https URL"),
    ("acme_server", "https://acme.example.test:99999/dir", {}, "nor an https URL"),
    ("acme_server", "https://acme.example.test/%zz", {}, "nor an https URL"),
    ("authentik_version", "latest", {}, "not an authentik release tag"),
    ("authentik_version", "2026.8.7\n", {}, "not an authentik release tag"),
    ("authentik_version", "2026.8.7-rc1", {}, "not an authentik release tag"),
    ("authentik_version", "2025.10.2", {}, "older than this template supports"),
    ("web_path", "auth", {}, "must start and end with '/'"),
    ("web_path", "/auth", {}, "must start and end with '/'"),
    ("web_path", "/a//b/", {}, "empty segment"),
    ("web_path", "/sso/../", {}, "'.' or '..' segment"),
    ("web_path", "/my auth/", {}, "not URL-safe"),
    ("web_path", "/a;b/", {}, "not URL-safe"),
    ("web_path", "/.well-known/sso/", {}, "under /.well-known/"),
    ("http_port", 0, {}, "HTTP-01 check nothing to reach"),
    ("http_port", 0, {"acme_challenge": "http"}, "use acme_challenge=dns"),
    ("http_port", 70000, {"acme_challenge": "dns"}, "not a TCP port"),
    ("acme_challenge", "tls-alpn", {}, "not a challenge type"),
    ("acme_dns_provider", "route66", {}, "not a DNS provider this template supports: use one of rfc2136"),
    ("acme_dns_provider", "", {}, "not a DNS provider this template supports"),
    ("acme_wildcard", True, {"acme_challenge": "http"}, "needs the DNS challenge"),
    ("acme_dns_propagation_seconds", 7200, {}, "use 0 to 3600 seconds"),
    ("acme_rfc2136_server", "", {}, "not an IP address"),
    ("acme_rfc2136_server", "192.0.2.53:53", {}, "not an IP address"),
    ("acme_rfc2136_server", "ns1.example.test", {}, "takes no host name"),
    ("acme_rfc2136_port", 0, {}, "not a TCP port"),
    ("acme_rfc2136_key_name", "", {}, "not a TSIG key name"),
    ("acme_rfc2136_key_name", "my key", {}, "not a TSIG key name"),
    ("acme_rfc2136_algorithm", "HMAC-SHA3", {}, "not a TSIG algorithm certbot knows"),
    ("acme_dns_secret", "", {"acme_dns_provider": "rfc2136"}, "TSIG secret is missing"),
    ("acme_dns_secret", "", {"acme_dns_provider": "cloudflare"}, "API token is missing"),
    ("acme_dns_secret", "has spaces in it", {}, "does not look like one"),
    ("acme_dns_secret", "abcdefgh\nX=1", {}, "does not look like one"),
    ("https_port", 65536, {"http_port": 80}, "not a TCP port"),
    ("https_port", 80, {"http_port": 80}, "must differ"),
    ("smtp_host", "smtp example.com", {}, "not a host name"),
    ("smtp_host", "smtp.example.com\n", {}, "not a host name"),
    ("smtp_host", "", {}, "not a host name"),
    ("smtp_port", 0, {}, "not a TCP port"),
    ("smtp_username", "mailer\nX=1", {}, "line break"),
    ("smtp_username", "domain\\", {}, "ends with a backslash"),
    ("smtp_from", "authentik", {}, "not a sender address"),
    ("smtp_from", "junk authentik@example.com", {}, "not a sender address"),
    ("smtp_from", "authentik <authentik@example.com", {}, "not a sender address"),
    ("smtp_from", "authentik@example.com\nX=1", {}, "not a sender address"),
    ("smtp_from", "Doe, Jane <jane@example.com>", {}, "not a sender address"),
]

#: The network questions: every bad answer we could think of.
BAD_NETWORK_ANSWERS = [
    ("proxy_subnet", "010.1.2.0/28", "leading zeros are not permitted"),
    ("proxy_subnet", "10.1.2.0/33", "not an IPv4 CIDR"),
    ("proxy_subnet", "300.1.2.0/24", "not an IPv4 CIDR"),
    ("proxy_subnet", "10.1.2/24", "not an IPv4 CIDR"),
    ("proxy_subnet", "10.1.2.0/", "not an IPv4 CIDR"),
    ("proxy_subnet", "10.1.2.0/255.255.255.0", "not a prefix length"),
    ("proxy_subnet", "10.1.2.0/28/4", "not an IPv4 CIDR"),
    ("proxy_subnet", "10.1.2.0", "has no prefix length"),
    ("proxy_subnet", " 10.1.2.0/28", "not an IPv4 CIDR"),
    ("proxy_subnet", "10.1.2.0/28\n", "not an IPv4 CIDR"),
    ("proxy_subnet", "8.8.8.0/28", "not a private range"),
    ("proxy_subnet", "100.64.0.0/28", "not a private range"),
    ("proxy_subnet", "10.0.0.0/8", "/8"),
    ("proxy_subnet", "10.1.2.0/30", "/30"),
    ("proxy_subnet", "10.1.2.5/28", "host bits set: did you mean 10.1.2.0/28?"),
    ("proxy_subnet", "fd00::/64", "is an IPv6 network"),
    ("proxy_subnet", "banana", "not an IPv4 CIDR"),
    ("proxy_subnet", "", "not an IPv4 CIDR"),
    ("proxy_subnet_v6", "fd12:3456:789a:1::1/64", "host bits set: did you mean fd12:3456:789a:1::/64?"),
    ("proxy_subnet_v6", "fd::::/64", "at most one '::'"),
    ("proxy_subnet_v6", "fd00:::/64", "not a unique-local IPv6 CIDR"),
    ("proxy_subnet_v6", "fd00::/129", "not a unique-local IPv6 CIDR"),
    ("proxy_subnet_v6", "fd00::%eth0/64", "zone index"),
    ("proxy_subnet_v6", "fd00::", "has no prefix length"),
    ("proxy_subnet_v6", "2001:db8::/64", "not a unique-local IPv6 range"),
    ("proxy_subnet_v6", "fe80::/64", "not a unique-local IPv6 range"),
    ("proxy_subnet_v6", "fd00::/40", "/40"),
    ("proxy_subnet_v6", "fd00::/126", "/126"),
    ("proxy_subnet_v6", "10.1.2.0/28", "is an IPv4 network"),
    ("proxy_subnet_v6", "fdgg::/64", "not a unique-local IPv6 CIDR"),
    ("upstream_proxies", "0.0.0.0/0", "every IPv4 address"),
    ("upstream_proxies", "::/0", "every IPv6 address"),
    ("upstream_proxies", "192.0.2.10, 10.0.0.0/4", "far broader than any proxy"),
    ("upstream_proxies", "2001:db8::/12", "far broader than any proxy"),
    ("upstream_proxies", "192.0.2.300", "not an IPv4 address"),
    ("upstream_proxies", "192.0.2.0/33", "not an IPv4 address or CIDR"),
    ("upstream_proxies", "192.0.2.1/24", "did you mean 192.0.2.0/24 (or 192.0.2.1 alone)?"),
    ("upstream_proxies", "2001:db8:::1", "not an IPv6 address or CIDR"),
    ("upstream_proxies", "2001:db8::1/64", "did you mean 2001:db8::/64 (or 2001:db8::1 alone)?"),
    ("upstream_proxies", "192.0.2.0/x", "not an IPv4 address or CIDR"),
    ("upstream_proxies", "cloudflare, my-router", "'my-router' is neither 'cloudflare' nor"),
    ("upstream_proxies", "010.0.0.1", "leading zeros"),
    ("upstream_proxies", "fe80::1%eth0", "zone index"),
    ("upstream_proxies", "192.0.2.0/24;", "not an IPv4 address or CIDR"),
    ("upstream_proxies", "192.0.2.10/", "not an IPv4 address or CIDR"),
    # Item 8 of the review: nginx refused these after the question let them through.
    ("upstream_proxies", ":::", "not an IPv6 address or CIDR"),
    ("upstream_proxies", "::1:", "not an IPv6 address or CIDR"),
    ("upstream_proxies", "1:2::3:", "not an IPv6 address or CIDR"),
    ("upstream_proxies", ":1::", "not an IPv6 address or CIDR"),
]


@pytest.mark.parametrize(("question", "answer", "others", "words"), BAD_ANSWERS)
def test_bad_answer_is_refused_with_what_is_wrong_and_the_fix(question, answer, others, words):
    message = problem_with(question, answer, **others)
    assert words in message, message
    assert ": " in message, f"no fix in {message!r}"


@pytest.mark.parametrize(("question", "answer", "words"), BAD_NETWORK_ANSWERS)
def test_bad_network_answer_is_refused_with_what_is_wrong(question, answer, words):
    message = problem_with(question, answer)
    assert words in message, message
    if answer and "," not in answer:  # in a list, the item at fault is named
        assert repr(answer)[1:-1] in message, "the message names the answer"


@pytest.mark.parametrize(("question", "answer", "others"), GOOD_ANSWERS)
def test_good_answer_is_accepted(question, answer, others):
    assert problem_with(question, answer, **others) == ""


def test_the_smtp_password_is_never_shown_in_a_message():
    secret = "hunter2-very-secret\n"
    message = problem_with("smtp_password", secret)
    assert message and "hunter2" not in message


def test_the_dns_secret_is_never_shown_in_a_message():
    secret = "hunter2 very secret"
    for provider in ("rfc2136", "cloudflare"):
        message = problem_with("acme_dns_secret", secret, acme_dns_provider=provider)
        assert message and "hunter2" not in message


def test_a_dns_secret_already_in_env_counts_only_for_its_provider(tmp_path):
    from scaffold.answer_rules import dns_secret_stored

    assert not dns_secret_stored(tmp_path, "rfc2136")
    env = "PG_PASS=x\nCERTBOT_RFC2136_SECRET=\nexport CERTBOT_CLOUDFLARE_API_TOKEN='t0k'\n"
    (tmp_path / ".env").write_text(env)
    assert not dns_secret_stored(tmp_path, "rfc2136")
    assert dns_secret_stored(tmp_path, "cloudflare")
    (tmp_path / ".env").write_text("CERTBOT_RFC2136_SECRET=c2VjcmV0  # TSIG\n")
    assert dns_secret_stored(tmp_path, "rfc2136")
    assert not dns_secret_stored(tmp_path, "route66")
    # copier's temporary render of an update holds no .env: the question was answered in the project.
    assert dns_secret_stored(tmp_path / "copier._main.new_copy.x1y2" / "sso", "rfc2136")


def test_copier_s_update_renders_are_told_apart_from_the_project():
    from scaffold.answer_rules import is_copier_replica

    for render in ("copier._main.old_copy.ab12", "copier._main.new_copy.cd34"):
        assert is_copier_replica(f"/tmp/{render}") and is_copier_replica(f"/tmp/{render}/sub/sso")
    for project in ("/srv/sso", "/srv/copier/sso", "/tmp/copier._vcs.clone.ab12", "/srv/copier._main.old"):
        assert not is_copier_replica(project), project


def test_answers_of_a_disabled_feature_are_not_checked():
    for question in ("smtp_host", "smtp_port", "smtp_username", "smtp_password", "smtp_from"):
        assert problem_with(question, "\n" if question != "smtp_port" else 0, smtp_enabled=False) == ""
    assert problem_with("proxy_subnet_v6", "fd::::/64", enable_ipv6=False) == ""


# --- Item 6: whole-string matching everywhere ---------------------------------------------------

#: The other answers a text rule depends on, for the examples above.
TEXT_ANSWER_CONTEXT = {"public_url": {"domain": "sso.example.test"}}
#: Separators: the answer is a list, a line break there is one more comma.
WHITESPACE_IS_A_SEPARATOR = {"upstream_proxies"}


def test_every_text_rule_has_a_valid_example_here():
    text_rules = {
        name
        for name in RULES
        if name
        not in {
            "acme_accept_no_email",
            "http_port",
            "https_port",
            "backup_keep",
            "outpost_docker_socket",
            "apps",
            "acme_wildcard",
            "acme_dns_propagation_seconds",
            "acme_rfc2136_port",
        }
    }
    assert text_rules - {"smtp_port"} == set(VALID_TEXT_ANSWERS)
    for question, answer in VALID_TEXT_ANSWERS.items():
        assert problem_with(question, answer, **TEXT_ANSWER_CONTEXT.get(question, {})) == "", question


@settings(max_examples=300, deadline=None)
@given(
    question=st.sampled_from(sorted(set(VALID_TEXT_ANSWERS) - WHITESPACE_IS_A_SEPARATOR)),
    control=st.sampled_from(["\n", "\r", "\r\n", "\x00", "\t", "\x1b", "\x85", "\u2028"]),
    where=st.sampled_from(["end", "start", "middle"]),
)
def test_no_answer_lets_a_line_break_or_control_character_through(question, control, where):
    """Review item 6: `re.search` with `$` let a trailing newline into nginx's `return 301 ...`."""
    valid = VALID_TEXT_ANSWERS[question]
    cut = len(valid) // 2
    answer = {
        "end": valid + control,
        "start": control + valid,
        "middle": valid[:cut] + control + valid[cut:],
    }[where]
    assert problem_with(question, answer, **TEXT_ANSWER_CONTEXT.get(question, {})), (
        f"{question}={answer!r} was accepted"
    )


# --- The network rules against ipaddress ------------------------------------------------------


def _any_range(version: int):
    bits = 32 if version == 4 else 128
    family = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address

    @st.composite
    def build(draw):
        value = draw(st.integers(0, 2**bits - 1))
        if draw(st.booleans()):  # a run of zero bits, so that '::' lands anywhere
            start, length = draw(st.integers(0, bits - 1)), draw(st.integers(0, bits))
            value &= ~(((1 << length) - 1) << start) & ((1 << bits) - 1)
        prefix = draw(st.integers(0, bits))
        address = family(value)
        if draw(st.booleans()):
            address = ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address
        text = address.exploded if draw(st.booleans()) else address.compressed
        text = text.upper() if draw(st.booleans()) else text
        return text if draw(st.integers(0, 6)) == 0 else f"{text}/{prefix}"

    return build()


@settings(max_examples=600, deadline=None)
@given(answer=st.one_of(_any_range(4), _any_range(6)))
def test_upstream_proxies_agree_with_ipaddress(answer):
    network = ipaddress.ip_network(answer, strict=False)
    message = problem_with("upstream_proxies", answer)
    if network.prefixlen < BROADEST_UPSTREAM_PREFIX[network.version]:
        assert "every IPv" in message or "far broader than any proxy" in message, (answer, message)
        return
    try:
        ipaddress.ip_network(answer, strict=True)
    except ValueError:
        assert "has host bits set" in message, (answer, message)
        suggested = message.split("did you mean ", 1)[1].split(" ", 1)[0]
        assert ipaddress.ip_network(suggested) == network, (answer, message)
        return
    assert message == "", f"{answer!r} is a valid network but was refused: {message}"
    (written,) = parse_upstream_proxies(answer).ranges
    assert ipaddress.ip_network(written) == network, "nginx gets the network the answer meant"


@settings(max_examples=500, deadline=None)
@given(answer=st.text(alphabet=string.hexdigits + ":./%, g", max_size=40))
def test_upstream_proxies_accept_only_what_ipaddress_reads(answer):
    """Junk made of the characters addresses are made of: the rule never accepts what ipaddress refuses."""
    if problem_with("upstream_proxies", answer):
        return
    for written in parse_upstream_proxies(answer).ranges:
        ipaddress.ip_network(written, strict=True)  # raises for anything nginx would refuse


def _subnet_verdict(answer: str, version: int) -> bool:
    """The proxy subnet rule, restated with ipaddress: a strict CIDR, private and sized as allowed."""
    try:
        network = ipaddress.ip_network(answer, strict=True)
    except ValueError:
        return False
    if "/" not in answer or network.version != version:
        return False
    if version == 4:
        return any(network.subnet_of(p) for p in PRIVATE_V4) and network.prefixlen in V4_PREFIX_RANGE
    return network.subnet_of(ULA) and network.prefixlen in V6_PREFIX_RANGE


def _private_ranges(version: int):
    """Ranges inside the private / unique-local space, half of them written as proper networks."""
    bits = 32 if version == 4 else 128
    if version == 4:
        base = st.sampled_from([10 << 24, (172 << 24) | (16 << 16), (192 << 24) | (168 << 16)])
        low, prefixes = st.integers(0, 2**16 - 1), st.integers(8, 32)
    else:
        base, low, prefixes = st.just(0xFD << 120), st.integers(0, 2**120 - 1), st.integers(40, 128)

    def build(base: int, low: int, prefix: int, strict: bool) -> str:
        value = base | low
        if strict:
            value &= ~((1 << (bits - prefix)) - 1)
        return f"{ipaddress.ip_address(value) if version == 6 else ipaddress.IPv4Address(value)}/{prefix}"

    return st.builds(build, base, low, prefixes, st.booleans())


SUBNET_ANSWERS = {
    version: st.one_of(_private_ranges(version), _any_range(version), _any_range(10 - version))
    for version in (4, 6)
}


@pytest.mark.parametrize("version", [4, 6])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_proxy_subnet_rules_agree_with_ipaddress(version, data):
    """Issue 14: the Jinja copies let through what Python refused (010.1.2.0/28, host bits, fd::::/64)."""
    answer = data.draw(SUBNET_ANSWERS[version])
    question = "proxy_subnet" if version == 4 else "proxy_subnet_v6"
    message = problem_with(question, answer)
    assert (message == "") == _subnet_verdict(answer, version), (answer, message)


# --- Values the templates use --------------------------------------------------------------------


def test_project_name_default_comes_from_the_folder():
    assert default_project_name("/srv/2024") == "2024"
    assert default_project_name("/srv/My SSO Stack/") == "my-sso-stack"
    assert default_project_name("/srv/__") == "authentik"
    assert problem_with("project_name", default_project_name("/srv/" + "x" * 80)) == ""


@settings(max_examples=500, deadline=None)
@given(path=st.text(min_size=1, max_size=80).filter(lambda p: "\x00" not in p))
def test_the_default_project_name_always_passes_the_rule(path):
    assert problem_with("project_name", default_project_name("/srv/" + path)) == ""


def test_parsed_upstream_proxies_are_canonical_and_deduplicated():
    proxies = parse_upstream_proxies(
        " 192.0.2.10,2001:DB8::/48\n Cloudflare ,, 192.0.2.10/32 198.51.100.0/24 "
    )
    assert proxies.ranges == ("192.0.2.10", "2001:db8::/48", "198.51.100.0/24")
    assert proxies.cloudflare and proxies.header == "CF-Connecting-IP"
    assert proxies.listed == "192.0.2.10, 2001:db8::/48, 198.51.100.0/24, cloudflare"
    assert parse_upstream_proxies("").empty and parse_upstream_proxies("10.0.0.1").header == "X-Forwarded-For"


@settings(max_examples=400, deadline=None)
@given(value=st.text())
def test_compose_string_reads_back_as_the_value_with_dollars_doubled(value):
    """Review item 5, the quoting half: YAML reads the scalar back exactly, and Compose then turns `$$`
    into `$` (so `$PG_PASS` in an answer never becomes the password)."""
    import yaml

    assert yaml.safe_load(f"key: {compose_string(value)}\n") == {"key": value.replace("$", "$$")}


def test_answer_problems_names_every_bad_answer_of_an_answers_file_with_its_dependencies():
    answers = {
        "domain": "sso.example.test",
        "upstream_proxies": "::1:",
        "enable_ipv6": False,
        "proxy_subnet_v6": "fd::::/64",  # IPv6 off: not checked, as copier would not
        "smtp_enabled": True,
        "smtp_port": "abc",  # hand-edited, wrong type
        "_src_path": "/somewhere",
    }
    problems = answer_problems(answers)
    assert set(problems) == {"upstream_proxies", "smtp_port"}
    assert "'::1:' is not an IPv6 address" in problems["upstream_proxies"]
    assert "'abc' cannot be read" in problems["smtp_port"]


def test_env_keys_of_the_dns_providers_are_the_ones_scaffold_keeps_secret() -> None:
    """envkeys spells the DNS secrets' keys out (the copier task must not load the rules): same keys."""
    from scaffold import envkeys
    from scaffold.answer_rules import DNS_PROVIDERS

    assert sorted(envkeys.DNS_SECRETS) == sorted(provider.env_key for provider in DNS_PROVIDERS.values())
    assert set(envkeys.DNS_SECRETS) <= set(envkeys.SECRET_KEYS)
