"""Every rule for the template's answers, once: copier's validators and scaffold's own code call these.

copier loads this file by path from the template's own checkout (see scaffold/copier_extension.py),
so a template version always validates with its own rules, whatever `scaffold` is installed. That is
why it imports nothing but the standard library, and nothing from the `scaffold` package.

Each rule either accepts an answer or raises `AnswerProblem` with what is wrong and how to fix it.
A rule also restricts the answer to characters that are safe where the template writes it (nginx
directives, README markdown, `.env` lines); what remains free text is quoted for its file by the
filters at the end (`compose_string` for compose.yaml). Whole-string matching everywhere
(`re.fullmatch`): a `$` in a pattern would let a trailing line break through.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network
Network = IPv4Network | IPv6Network

#: The proxy network (the one authentik trusts): private, and small.
PRIVATE_V4 = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
ULA = IPv6Network("fd00::/8")
V4_PREFIX_RANGE = range(16, 30)
V6_PREFIX_RANGE = range(48, 125)
#: No proxy in front of nginx needs a broader range: it would trust a good part of the Internet.
BROADEST_UPSTREAM_PREFIX = {4: 8, 6: 16}
CLOUDFLARE = "cloudflare"
#: authentik 2025.12 moved its files from /media to /data, which compose.yaml mounts.
OLDEST_AUTHENTIK = (2025, 12)
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?"
_MIXED_CASE_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_MIXED_CASE_LABEL}(?:\.{_MIXED_CASE_LABEL})*"
# RFC 5322 dot-atom local part: no quoted strings, no backslashes, no spaces.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MAILBOX = rf"{_ATOM}(?:\.{_ATOM})*@(?:{_MIXED_CASE_LABEL}\.)+[A-Za-z]{{2,63}}"
# A sender's display name: a quoted string without quotes or backslashes inside, or plain words.
_DISPLAY_NAME = r'"[^"\\\x00-\x1f\x7f]*"|[^<>"\\,;:@()\[\]\x00-\x1f\x7f]+'
_SENDER = rf"(?:(?:{_DISPLAY_NAME})\s*)?<{_MAILBOX}>|{_MAILBOX}"
# RFC 3986 path and query characters (no fragment: a directory URL has none).
_URL_REST = r"[/?](?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*"
_ACME_URL = rf"https://(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?(?:{_URL_REST})?"
_PROJECT_NAME = r"[a-z0-9][a-z0-9_-]*"
_RELEASE = r"(20[0-9]{2})\.([0-9]{1,2})\.([0-9]+)"
_WEB_PATH = r"(?:/[A-Za-z0-9._~-]+)*/"


class AnswerProblem(ValueError):
    """An answer the template cannot use: what is wrong (`message`) and how to fix it (`fix`)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}: {self.fix}"


def shown(value: object) -> str:
    """An answer quoted for a message: line breaks and other control characters made visible."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return f"'{text[:100]}…'" if len(text) > 100 else f"'{text}'"


def _has_control_characters(value: str) -> bool:
    return any(not c.isprintable() and c != " " for c in value)


# --- Deployment --------------------------------------------------------------------------------


def check_project_name(value: str) -> None:
    if not value:
        raise AnswerProblem("The project name is empty", "give one such as 'authentik'.")
    if len(value) > 63:
        raise AnswerProblem(f"{shown(value)} is too long", "use at most 63 characters.")
    if not re.fullmatch(_PROJECT_NAME, value):
        raise AnswerProblem(
            f"{shown(value)} is not a valid Compose project name",
            "use only lower-case letters, digits, '-' and '_', starting with a letter or digit "
            "(e.g. 'authentik').",
        )


def default_project_name(destination: object) -> str:
    """The destination folder's name as a valid Compose project name ('authentik' if nothing is left)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", os.path.basename(str(destination).rstrip("/")).lower())
    name = re.sub(r"^[^a-z0-9]+", "", name)[:63]
    return name or "authentik"


def check_domain(value: str) -> None:
    if not value:
        raise AnswerProblem(
            "The domain is required", "the public host name of authentik, e.g. sso.example.com."
        )
    if value != value.strip() or _has_control_characters(value) or " " in value:
        raise AnswerProblem(
            f"{shown(value)} has spaces or a line break", f"give only the host name, e.g. {value.strip()}."
        )
    if "://" in value:
        host = value.split("://", 1)[1].split("/")[0].split(":")[0]
        raise AnswerProblem(f"{shown(value)} has a scheme", f"give only the host name, e.g. {host}.")
    if "*" in value:
        raise AnswerProblem(
            f"{shown(value)} is a wildcard",
            "give the one host name authentik is served on; for a certificate that also covers "
            "*.domain, answer acme_wildcard=true (with acme_challenge=dns).",
        )
    if "/" in value:
        raise AnswerProblem(
            f"{shown(value)} has a path",
            f"authentik must be served at the root of its own host name; give only {value.split('/')[0]}.",
        )
    if ":" in value:
        raise AnswerProblem(
            f"{shown(value)} has a port", "give only the host name and set http_port / https_port instead."
        )
    if value != value.lower():
        raise AnswerProblem(
            f"{shown(value)} has upper-case letters", f"write it in lower case ({value.lower()})."
        )
    if len(value) > 253 or not re.fullmatch(_DOMAIN, value):
        raise AnswerProblem(
            f"{shown(value)} is not a valid host name",
            "use labels of letters, digits and '-' separated by dots, with at least one dot, "
            "e.g. sso.example.com.",
        )


# --- Certificates (ACME) -----------------------------------------------------------------------


def check_acme_email(value: str) -> None:
    if value and (len(value) > 254 or not re.fullmatch(_MAILBOX, value)):
        raise AnswerProblem(
            f"{shown(value)} is not a valid e-mail address",
            "use a form such as admin@example.com (no spaces, quotes or backslashes), or leave it empty.",
        )


def check_acme_accept_no_email(value: bool, *, acme_email: str = "") -> None:
    if not acme_email and not value:
        raise AnswerProblem(
            "No ACME e-mail given",
            "give one (--data acme_email=you@example.com), or accept running without one "
            "(--data acme_accept_no_email=true).",
        )


def check_acme_server(value: str) -> None:
    if value in ACME_DIRECTORIES:
        return
    match = re.fullmatch(_ACME_URL, value)
    port = match and match.group("port")
    if match is None or len(match.group("host")) > 253 or (port and not 1 <= int(port) <= 65535):
        raise AnswerProblem(
            f"{shown(value)} is neither 'letsencrypt', 'letsencrypt-staging' nor an https URL of an "
            "ACME directory",
            "give the directory URL the CA documents, e.g. https://acme.zerossl.com/v2/DV90 "
            "(no spaces, quotes or fragment).",
        )


def acme_directory_url(value: str) -> str:
    """The directory URL certbot gets: the named Let's Encrypt directories, or the URL as given."""
    return ACME_DIRECTORIES.get(value, value)


@dataclass(frozen=True)
class DnsProvider:
    """A certbot DNS plugin the template offers: its image, and where its one secret goes."""

    plugin: str  # certbot's plugin name: --dns-rfc2136, image certbot/dns-rfc2136
    secret_setting: str  # the credentials file's key for the secret
    env_key: str  # the `.env` key that holds the secret (the only place it is kept)
    secret_word: str  # what the provider calls it, for messages and the question


#: The official certbot DNS plugins this template offers; each has an image of its own.
DNS_PROVIDERS = {
    "rfc2136": DnsProvider("dns-rfc2136", "dns_rfc2136_secret", "CERTBOT_RFC2136_SECRET", "TSIG secret"),
    "cloudflare": DnsProvider(
        "dns-cloudflare", "dns_cloudflare_api_token", "CERTBOT_CLOUDFLARE_API_TOKEN", "API token"
    ),
}
ACME_CHALLENGES = ("http", "dns")
#: Folder prefixes of copier's temporary renders during an update (scaffold/hook.py skips them too).
COPIER_REPLICAS = ("copier._main.old_copy.", "copier._main.new_copy.")
#: The TSIG algorithms certbot's rfc2136 plugin accepts.
TSIG_ALGORITHMS = ("HMAC-MD5", "HMAC-SHA1", "HMAC-SHA224", "HMAC-SHA256", "HMAC-SHA384", "HMAC-SHA512")
# What a credentials file value and a `.env` value can both hold unquoted: base64 and token characters.
_DNS_SECRET = r"[A-Za-z0-9+/=_.-]{8,512}"
_TSIG_KEY_NAME = rf"{_MIXED_CASE_LABEL}(?:\.{_MIXED_CASE_LABEL})*\.?"


def check_acme_challenge(value: str) -> None:
    if value not in ACME_CHALLENGES:
        raise AnswerProblem(
            f"{shown(value)} is not a challenge type",
            "use 'http' (HTTP-01 through port 80) or 'dns' (DNS-01: a TXT record, no port 80 needed).",
        )


def check_acme_dns_provider(value: str, *, acme_challenge: str = "dns") -> None:
    if acme_challenge == "dns" and value not in DNS_PROVIDERS:
        raise AnswerProblem(
            f"{shown(value)} is not a DNS provider this template supports",
            f"use one of {', '.join(DNS_PROVIDERS)} (rfc2136 covers BIND, Knot, PowerDNS and routers that "
            "accept dynamic updates).",
        )


def check_acme_wildcard(value: bool, *, acme_challenge: str = "dns") -> None:
    if value and acme_challenge != "dns":
        raise AnswerProblem(
            "A wildcard certificate needs the DNS challenge (the CA only checks *.domain through DNS)",
            "set acme_challenge=dns and a DNS provider, or acme_wildcard=false.",
        )


def check_acme_dns_propagation_seconds(value: int, *, acme_challenge: str = "dns") -> None:
    if acme_challenge == "dns" and not 0 <= int(value) <= 3600:
        raise AnswerProblem(
            f"acme_dns_propagation_seconds is {value}",
            "use 0 to 3600 seconds (how long certbot waits for the TXT record to reach every DNS server).",
        )


def check_acme_rfc2136_server(value: str, *, acme_dns_provider: str = "rfc2136") -> None:
    if acme_dns_provider != "rfc2136":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise AnswerProblem(
            f"{shown(value)} is not an IP address (certbot's rfc2136 plugin takes no host name)",
            "give the IPv4 or IPv6 address of the DNS server that accepts dynamic updates, e.g. "
            "192.0.2.53 (its port is acme_rfc2136_port).",
        ) from None


def check_acme_rfc2136_port(value: int, *, acme_dns_provider: str = "rfc2136") -> None:
    if acme_dns_provider == "rfc2136":
        check_port(value)


def check_acme_rfc2136_key_name(value: str, *, acme_dns_provider: str = "rfc2136") -> None:
    if acme_dns_provider == "rfc2136" and (len(value) > 254 or not re.fullmatch(_TSIG_KEY_NAME, value)):
        raise AnswerProblem(
            f"{shown(value)} is not a TSIG key name",
            "give the key's name as the DNS server knows it, e.g. certbot. or acme-update.example.com "
            "(letters, digits, '-' and dots).",
        )


def check_acme_rfc2136_algorithm(value: str, *, acme_dns_provider: str = "rfc2136") -> None:
    if acme_dns_provider == "rfc2136" and value.upper() not in TSIG_ALGORITHMS:
        raise AnswerProblem(
            f"{shown(value)} is not a TSIG algorithm certbot knows",
            f"use one of {', '.join(TSIG_ALGORITHMS)} (the algorithm of the key on the DNS server).",
        )


def check_acme_dns_secret(
    value: str, *, acme_challenge: str = "dns", acme_dns_provider: str = "rfc2136", stored: bool = False
) -> None:
    """The provider's secret (never shown): required unless `.env` already holds one (`stored`)."""
    provider = DNS_PROVIDERS.get(acme_dns_provider)
    if acme_challenge != "dns" or provider is None:
        return
    if not value:
        if stored:
            return
        raise AnswerProblem(
            f"The {acme_dns_provider} {provider.secret_word} is missing: certbot cannot create the TXT "
            "record without it",
            f"give it (it is written only to .env as {provider.env_key}, never to the answers file), "
            "or choose acme_challenge=http.",
        )
    if not re.fullmatch(_DNS_SECRET, value):
        raise AnswerProblem(
            f"The {acme_dns_provider} {provider.secret_word} does not look like one (value not shown)",
            "give it exactly as the provider shows it: 8 to 512 characters among letters, digits and "
            "+ / = _ . - (base64 for a TSIG secret), no spaces or quotes.",
        )


def dns_secret_stored(destination: object, acme_dns_provider: str) -> bool:
    """Whether the project's `.env` already holds the provider's secret (an update need not give it).

    A plain line scan, enough for the question: scaffold's hook reads `.env` properly afterwards.
    True in copier's temporary renders of an update (they hold no `.env`; copier passes every answer,
    the empty secret included, to them as data): the question was answered in the project itself.
    """
    provider = DNS_PROVIDERS.get(acme_dns_provider)
    if provider is None:
        return False
    if is_copier_replica(destination):
        return True
    try:
        with open(os.path.join(str(destination), ".env"), encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return False
    pattern = rf"(?m)^[ \t]*(?:export[ \t]+)?{provider.env_key}[ \t]*=[ \t]*['\"]?[^\s'\"#]"
    return re.search(pattern, text) is not None


def is_copier_replica(destination: object) -> bool:
    """True for copier's temporary renders of the old and new version during an update (the
    project may sit in a subfolder of one); the task's `when:` skips the hook there unless apps
    need their nginx files (scaffold/hook.py), saving two Python starts per update."""
    return any(part.startswith(COPIER_REPLICAS) for part in str(destination).split(os.sep))


def certbot_image(acme_challenge: str, acme_dns_provider: str = "rfc2136") -> str:
    """The certbot project's image without its tag: the one that carries the chosen DNS plugin."""
    if acme_challenge != "dns":
        return "certbot/certbot"
    return f"certbot/{DNS_PROVIDERS[acme_dns_provider].plugin}"


# --- authentik ---------------------------------------------------------------------------------


def check_authentik_version(value: str) -> None:
    match = re.fullmatch(_RELEASE, value)
    if match is None:
        raise AnswerProblem(
            f"{shown(value)} is not an authentik release tag",
            "use the YEAR.MONTH.PATCH form, e.g. 2026.8.7 (release candidates and 'latest' are not "
            "supported).",
        )
    if (int(match.group(1)), int(match.group(2))) < OLDEST_AUTHENTIK:
        raise AnswerProblem(
            f"authentik {value} is older than this template supports",
            "it needs {}.{} or newer (files moved from /media to /data in 2025.12). Upgrade authentik "
            "first.".format(*OLDEST_AUTHENTIK),
        )


def check_web_path(value: str) -> None:
    if not value.startswith("/") or not value.endswith("/"):
        raise AnswerProblem(
            f"{shown(value)} must start and end with '/'",
            f"use '/' for the whole host name, or a path such as /{value.strip('/') or 'auth'}/.",
        )
    if "//" in value:
        raise AnswerProblem(f"{shown(value)} has an empty segment ('//')", "use a path such as /auth/.")
    if re.search(r"/\.{1,2}/", value):
        raise AnswerProblem(
            f"{shown(value)} has a '.' or '..' segment", "give the path plainly, such as /auth/."
        )
    if len(value) > 100:
        raise AnswerProblem(
            f"{shown(value)} is longer than 100 characters", "use a short path such as /auth/."
        )
    if not re.fullmatch(_WEB_PATH, value):
        raise AnswerProblem(
            f"{shown(value)} has characters that are not URL-safe",
            "use letters, digits, '-', '_', '.' and '~' between the slashes, e.g. /auth/.",
        )
    if value.startswith("/.well-known/"):
        raise AnswerProblem(
            f"{shown(value)} is under /.well-known/, which belongs to certificate challenges and other "
            "standard files",
            "use a path such as /auth/.",
        )


# --- Network -----------------------------------------------------------------------------------


def _parse_network(value: str, version: int) -> Network:
    """A CIDR of one family with a decimal prefix, host bits allowed (checked by the caller)."""
    _, slash, prefix = value.partition("/")
    if "%" in value:
        raise ValueError("it has a zone index ('%...'), which a network cannot have")
    if slash and not re.fullmatch(r"[0-9]{1,3}", prefix):
        raise ValueError(f"'/{prefix}' is not a prefix length")
    family = IPv4Network if version == 4 else IPv6Network
    try:
        return family(value, strict=False)
    except ValueError as exc:
        reason = str(exc)
        raise ValueError(reason[:1].lower() + reason[1:]) from None


def check_proxy_network(network: Network, *, as_written: str | None = None) -> None:
    """The proxy network's range rules (private or unique-local, and small), for answers and `.env` pins.

    `as_written`: how the messages name the network (default: its canonical form).
    """
    name = as_written or str(network)
    if isinstance(network, IPv4Network):
        if not any(network.subnet_of(private) for private in PRIVATE_V4):
            raise AnswerProblem(
                f"{name} is not a private range",
                "use a subnet inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, or 'auto'",
            )
        if network.prefixlen not in V4_PREFIX_RANGE:
            raise AnswerProblem(
                f"{name} is a /{network.prefixlen}",
                "use a prefix from /16 to /29; authentik trusts the whole network, a /28 is plenty",
            )
    else:
        if not network.subnet_of(ULA):
            raise AnswerProblem(
                f"{name} is not a unique-local IPv6 range",
                "use a subnet inside fd00::/8 such as fd12:3456:789a:1::/64, or 'auto'",
            )
        if network.prefixlen not in V6_PREFIX_RANGE:
            raise AnswerProblem(
                f"{name} is a /{network.prefixlen}", "use a prefix from /48 to /124, e.g. /64"
            )


def _check_subnet_answer(value: str, version: int) -> None:
    example = "10.203.7.0/28" if version == 4 else "fd12:3456:789a:1::/64"
    kind = "an IPv4 CIDR" if version == 4 else "a unique-local IPv6 CIDR"
    if value == "auto":
        return
    other = 6 if version == 4 else 4
    try:
        _parse_network(value, other)
    except ValueError:
        pass
    else:
        fix = (
            "set enable_ipv6=true and give it as proxy_subnet_v6"
            if version == 4
            else "give the IPv4 subnet as proxy_subnet"
        )
        raise AnswerProblem(f"{shown(value)} is an IPv{other} network, not {kind}", f"{fix}, or use 'auto'.")
    try:
        network = _parse_network(value, version)
    except ValueError as exc:
        raise AnswerProblem(
            f"{shown(value)} is not {kind} ({exc})", f"use 'auto' or a form such as {example}."
        ) from None
    if "/" not in value:
        raise AnswerProblem(
            f"{shown(value)} has no prefix length", f"use 'auto' or a CIDR such as {example}."
        )
    try:
        check_proxy_network(network, as_written=shown(value))
    except AnswerProblem as problem:
        raise AnswerProblem(problem.message, problem.fix + ".") from None
    if ipaddress.ip_address(value.split("/")[0]) != network.network_address:
        raise AnswerProblem(f"{shown(value)} has host bits set", f"did you mean {network}?")


def check_proxy_subnet(value: str) -> None:
    _check_subnet_answer(value, 4)


def check_proxy_subnet_v6(value: str, *, enable_ipv6: bool = True) -> None:
    if enable_ipv6:
        _check_subnet_answer(value, 6)


@dataclass(frozen=True)
class UpstreamProxies:
    """The `upstream_proxies` answer, parsed: canonical ranges, and whether Cloudflare is listed."""

    ranges: tuple[str, ...] = ()
    cloudflare: bool = False

    @property
    def header(self) -> str:
        """The header nginx reads the client's address from."""
        return "CF-Connecting-IP" if self.cloudflare else "X-Forwarded-For"

    @property
    def listed(self) -> str:
        """The answer as a tidy list, for messages and the README."""
        return ", ".join([*self.ranges, *([CLOUDFLARE] if self.cloudflare else [])])

    @property
    def empty(self) -> bool:
        return not (self.ranges or self.cloudflare)


def split_upstream_proxies(value: object) -> list[str]:
    """The items of an `upstream_proxies` answer: separated by commas and/or whitespace."""
    return [item for item in re.split(r"[\s,]+", str(value or "")) if item]


_ANY_RANGE = "write an address such as 192.0.2.10, or a CIDR such as 192.0.2.0/24 or 2001:db8::/48."


def parse_upstream_range(item: str) -> Network:
    """One proxy address or CIDR, strictly: the network nginx will trust, or AnswerProblem."""
    version = 6 if ":" in item else 4
    if version == 4 and not re.fullmatch(r"[0-9.]+", item.split("/")[0]):
        raise AnswerProblem(
            f"{shown(item)} is neither 'cloudflare' nor an IP address or CIDR",
            "list the proxies in front of nginx separated by commas, e.g. 192.0.2.10, 2001:db8::/48, "
            "cloudflare.",
        )
    try:
        network = _parse_network(item, version)
    except ValueError as exc:
        raise AnswerProblem(
            f"{shown(item)} is not an IPv{version} address or CIDR ({exc})", _ANY_RANGE
        ) from None
    if network.prefixlen == 0:
        raise AnswerProblem(
            f"{shown(item)} is every IPv{version} address",
            "anybody could then choose the client address authentik sees. List only the proxies in "
            f"front of nginx (e.g. {'192.0.2.10' if version == 4 else '2001:db8::10'}, or 'cloudflare').",
        )
    if network.prefixlen < BROADEST_UPSTREAM_PREFIX[version]:
        raise AnswerProblem(
            f"{shown(item)} (/{network.prefixlen}) is far broader than any proxy",
            "every address in it could choose its own client address. List only the proxies in front "
            "of nginx.",
        )
    address = ipaddress.ip_address(item.split("/")[0])
    if address != network.network_address:
        raise AnswerProblem(
            f"{shown(item)} has host bits set",
            f"did you mean {network} (or {address} alone)?",
        )
    return network


def parse_upstream_proxies(value: object) -> UpstreamProxies:
    """Every item checked; the ranges in nginx's canonical form (an address alone when it is one)."""
    ranges: list[str] = []
    cloudflare = False
    for item in split_upstream_proxies(value):
        if item.lower() == CLOUDFLARE:
            cloudflare = True
            continue
        network = parse_upstream_range(item)
        full = network.prefixlen == network.max_prefixlen
        text = str(network.network_address) if full else str(network)
        if text not in ranges:
            ranges.append(text)
    return UpstreamProxies(tuple(ranges), cloudflare)


def check_port(value: int) -> None:
    if not 1 <= int(value) <= 65535:
        raise AnswerProblem(f"{value} is not a TCP port", "use 1 to 65535.")


def check_http_port(value: int, *, acme_challenge: str = "http") -> None:
    """0 means "not published", which only DNS-01 can live with."""
    if int(value) == 0:
        if acme_challenge != "dns":
            raise AnswerProblem(
                "http_port 0 (no HTTP port) leaves the CA's HTTP-01 check nothing to reach",
                "publish a port (80 unless a router forwards another one), or use acme_challenge=dns.",
            )
        return
    check_port(value)


def check_https_port(value: int, *, http_port: int = 80) -> None:
    check_port(value)
    if value == http_port:
        raise AnswerProblem(f"https_port and http_port are both {value}", "they must differ.")


def check_public_url(value: str, *, domain: str = "") -> None:
    """Where users reach authentik: https, the domain itself, an optional port, nothing else (the
    path is `web_path`). It may differ from `https_port` when a router or proxy forwards to it."""
    example = f"https://{domain or 'DOMAIN'}"
    rest = value[len("https://") :] if value.startswith("https://") else ""
    if not rest:
        raise AnswerProblem(f"{shown(value)} is not an https URL", f"use {example} (or {example}:PORT).")
    host, colon, port = rest.partition(":")
    if re.search(r"[/?#@\s]", rest) or _has_control_characters(rest):
        plain = re.sub(r"\s", "", host.split("/")[0]).lower() + (f":{port.split('/')[0]}" if colon else "")
        raise AnswerProblem(
            f"{shown(value)} has more than a host and port",
            f"give https://{plain} (authentik's path is web_path).",
        )
    if host != domain:
        raise AnswerProblem(
            f"{shown(value)} is not on the domain {domain}", f"use {example} (or {example}:PORT)."
        )
    if colon and not (re.fullmatch(r"[1-9][0-9]{0,4}", port) and int(port) <= 65535):
        raise AnswerProblem(
            f"{shown(value)} has no valid port after ':'", "use a port from 1 to 65535, or none for 443."
        )
    if port == "443":
        raise AnswerProblem(f"{shown(value)}: leave out :443", f"it is the default ({example}).")


# --- E-mail ------------------------------------------------------------------------------------


def check_smtp_host(value: str, *, smtp_enabled: bool = True) -> None:
    if smtp_enabled and (len(value) > 253 or not re.fullmatch(_HOST, value)):
        raise AnswerProblem(
            f"{shown(value)} is not a host name", "give the SMTP server's name, e.g. smtp.example.com."
        )


def check_smtp_port(value: int, *, smtp_enabled: bool = True) -> None:
    if smtp_enabled:
        check_port(value)


def _check_one_line(what: str, value: str) -> None:
    """Free text that goes into `.env`: one line, and not ending in a backslash, which no `.env`
    quoting reads back the same in both Docker Compose and python-dotenv."""
    if _has_control_characters(value):
        raise AnswerProblem(f"{what} has a line break or another control character", "give it on one line.")
    if value.endswith("\\"):
        raise AnswerProblem(
            f"{what} ends with a backslash, which .env cannot hold", "leave out the final '\\'."
        )


def check_smtp_username(value: str, *, smtp_enabled: bool = True) -> None:
    if smtp_enabled:
        _check_one_line(f"The SMTP user name {shown(value)}", value)


def check_smtp_password(value: str, *, smtp_enabled: bool = True) -> None:
    if smtp_enabled:  # never shown: it is a secret
        _check_one_line("The SMTP password", value)


def check_smtp_from(value: str, *, smtp_enabled: bool = True) -> None:
    if smtp_enabled and (_has_control_characters(value) or not re.fullmatch(_SENDER, value)):
        raise AnswerProblem(
            f"{shown(value)} is not a sender address",
            "use a form such as authentik@example.com or 'authentik <authentik@example.com>' (put a name "
            'with commas in double quotes: "Doe, Jane" <jane@example.com>).',
        )


# --- Scheduled backups -------------------------------------------------------------------------


def check_backup_schedule(value: str) -> None:
    """A systemd calendar time (or `off`): it lands on the timer's `OnCalendar=` line, so one line of
    the characters calendar times use, and nothing a unit file would read as more."""
    if value != "off" and not re.fullmatch(r"[A-Za-z0-9*:,. /~-]+", value):
        raise AnswerProblem(
            f"{shown(value)} is not a systemd calendar time",
            "use daily, weekly or a form such as *-*-* 03:30 (or off for no schedule).",
        )


def check_backup_keep(value: int, *, backup_schedule: str = "daily") -> None:
    if backup_schedule != "off" and value < 1:
        raise AnswerProblem(f"backup_keep is {value}", "keep at least 1 archive.")


# --- Apps behind forward auth -----------------------------------------------------------------

#: An app's name: its file names (nginx/conf.d/apps/NAME.conf, nginx/custom/apps/NAME.d/) and
#: authentik's application slug, so lower-case letters, digits, '-' and '_'.
_APP_NAME = r"[a-z0-9][a-z0-9_-]{0,49}"
#: A Compose service, a LAN host name or an IPv4 address, or an IPv6 address in brackets.
_UPSTREAM = r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})"
_BYPASS = r"(?:/[A-Za-z0-9._~-]+)+/?"
#: Paths of the app's host that belong to the stack: the embedded outpost and ACME challenges.
RESERVED_PATHS = ("/outpost.goauthentik.io", "/.well-known/acme-challenge")
APP_KEYS = ("host", "upstream", "websockets", "bypass", "identity_headers", "group")


@dataclass(frozen=True)
class App:
    """One app behind forward auth (an item of the `apps` answer), with its defaults filled in."""

    name: str
    host: str
    upstream: str
    websockets: bool = True
    bypass: tuple[str, ...] = ()
    identity_headers: bool = True
    group: str = ""


def _require(condition: bool, message: str, fix: str) -> None:
    """Raise `AnswerProblem(message, fix)` unless `condition` holds, so that a check reads as its rule."""
    if not condition:
        raise AnswerProblem(message, fix)


def _check_app_name(name: object) -> str:
    _require(
        isinstance(name, str) and re.fullmatch(_APP_NAME, name) is not None,
        f"the app name {shown(name)} is not a valid file name",
        "use 1 to 50 lower-case letters, digits, '-' and '_', starting with a letter or digit "
        "(e.g. jellyfin).",
    )
    return str(name)


def _check_app_host(name: str, host: object, domain: str) -> str:
    try:
        check_domain(host if isinstance(host, str) else "")
    except AnswerProblem as problem:
        raise AnswerProblem(
            f"app {name}: host {problem.message[:1].lower()}{problem.message[1:]}",
            problem.fix.replace("authentik", f"app {name}"),
        ) from None
    _require(
        host != domain,
        f"app {name}: host {shown(host)} is authentik's own domain",
        f"give the app a host name of its own, e.g. {name}.{domain.partition('.')[2] or domain}.",
    )
    return str(host)


def _check_upstream(name: str, upstream: object) -> str:
    match = re.fullmatch(_UPSTREAM, upstream) if isinstance(upstream, str) else None
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise AnswerProblem(
            f"app {name}: upstream {shown(upstream)} is not http(s)://HOST:PORT",
            "give the scheme, host and port nginx reaches the app at, nothing else, e.g. "
            "http://jellyfin:8096 (a Compose service on a network nginx shares) or "
            "http://192.168.1.20:8096.",
        )
    if match.group("host").startswith("["):
        try:
            ipaddress.IPv6Address(match.group("host")[1:-1])
        except ValueError:
            raise AnswerProblem(
                f"app {name}: upstream {shown(upstream)} has no valid IPv6 address in brackets",
                "write it as http://[2001:db8::20]:8096.",
            ) from None
    return upstream


def _check_bypass(name: str, bypass: object) -> tuple[str, ...]:
    items = [bypass] if isinstance(bypass, str) else bypass
    if not isinstance(items, (list, tuple)):
        raise AnswerProblem(f"app {name}: bypass {shown(bypass)} is not a list of paths", "e.g. [/api/].")
    for path in items:
        if not isinstance(path, str) or not re.fullmatch(_BYPASS, path) or re.search(r"/\.{1,2}(/|$)", path):
            raise AnswerProblem(
                f"app {name}: bypass {shown(path)} is not a path",
                "give a path of the app that skips the login, starting with '/', of letters, digits, "
                "'-', '_', '.' and '~' between the slashes, e.g. /api/ (not / itself: that would "
                "leave the whole app open).",
            )
        if any(path == reserved or path.startswith(reserved + "/") for reserved in RESERVED_PATHS):
            raise AnswerProblem(
                f"app {name}: bypass {shown(path)} belongs to the stack (forward auth or certificates)",
                "give a path of the app itself, such as /api/.",
            )
    return tuple(items)


def _check_group(name: str, group: object) -> str:
    if group is None or group == "":
        return ""
    _require(
        isinstance(group, str)
        and group == group.strip()
        and not _has_control_characters(group)
        and len(group) <= 150,
        f"app {name}: group {shown(group)} is not an authentik group name",
        "give the name of the group whose members may use the app, on one line, without leading "
        "or trailing spaces (at most 150 characters), or leave it out for every user.",
    )
    return str(group)


def _check_flag(name: str, key: str, value: object) -> bool:
    if value is None:
        return True
    _require(isinstance(value, bool), f"app {name}: {key} is {shown(value)}", "use true or false.")
    return bool(value)


def _parse_app(name: object, spec: object, domain: str) -> App:
    name = _check_app_name(name)
    if not isinstance(spec, dict):
        raise AnswerProblem(
            f"app {name} is {shown(spec)}, not a mapping",
            "give at least its host and upstream, e.g. {host: jellyfin.example.com, upstream: "
            "'http://jellyfin:8096'}.",
        )
    unknown = sorted(str(key) for key in spec if key not in APP_KEYS)
    if unknown:
        raise AnswerProblem(
            f"app {name} has unknown settings: {', '.join(unknown)}",
            f"an app has only {', '.join(APP_KEYS)}.",
        )
    return App(
        name=name,
        host=_check_app_host(name, spec.get("host"), domain),
        upstream=_check_upstream(name, spec.get("upstream")),
        websockets=_check_flag(name, "websockets", spec.get("websockets")),
        bypass=_check_bypass(name, spec.get("bypass") or []),
        identity_headers=_check_flag(name, "identity_headers", spec.get("identity_headers")),
        group=_check_group(name, spec.get("group")),
    )


def parse_apps(value: object, *, domain: str = "") -> tuple[App, ...]:
    """The `apps` answer (a mapping of name to settings), every app checked, defaults filled in.

    Host names must differ from `domain` and from each other: nginx and authentik's outpost both pick
    the app by host name.
    """
    if value is None or value == "" or value == {}:
        return ()
    if not isinstance(value, dict):
        raise AnswerProblem(
            f"apps {shown(value)} is not a mapping of app names to settings",
            "e.g. {jellyfin: {host: jellyfin.example.com, upstream: 'http://jellyfin:8096'}}, or use "
            "`scaffold app add`.",
        )
    apps: list[App] = []
    for name, spec in value.items():
        app = _parse_app(name, spec, domain)
        for other in apps:
            if other.host == app.host:
                raise AnswerProblem(
                    f"apps {other.name} and {app.name} have the same host {app.host}",
                    "give each app a host name of its own.",
                )
        apps.append(app)
    # By name: copier stores the answer with its keys sorted, so the order given must not matter
    # (a re-render from the stored answer must give the same files, or updates see conflicts).
    return tuple(sorted(apps, key=lambda app: app.name))


def check_apps(value: object, *, domain: str = "", target: str = "compose") -> None:
    if parse_apps(value, domain=domain) and target == "swarm":
        raise AnswerProblem(
            "apps behind forward auth are not supported with target swarm yet (the stack file has no "
            "blueprints mount and no apps network)",
            "use target compose for apps, or leave apps empty on Swarm.",
        )


def app_public_port(public_url: str) -> str:
    """The port users reach the stack on (public_url's; empty for 443), which apps share."""
    return public_url.split("://", 1)[-1].partition(":")[2]


def check_outpost_docker_socket(value: bool, *, target: str = "compose") -> None:
    """authentik's Docker outpost integration manages containers on one daemon, not Swarm services."""
    if value and target == "swarm":
        raise AnswerProblem(
            "outpost_docker_socket is true with target swarm, which authentik's Docker integration "
            "does not support (goauthentik/authentik#2785)",
            "answer false, and run outposts as services of the stack (the embedded outpost works as is).",
        )


#: The rule of every question that has one; copier.yml's validators call them through `problem_with`.
RULES: dict[str, Callable[..., None]] = {
    "project_name": check_project_name,
    "domain": check_domain,
    "acme_email": check_acme_email,
    "acme_accept_no_email": check_acme_accept_no_email,
    "acme_server": check_acme_server,
    "authentik_version": check_authentik_version,
    "web_path": check_web_path,
    "proxy_subnet": check_proxy_subnet,
    "proxy_subnet_v6": check_proxy_subnet_v6,
    "upstream_proxies": parse_upstream_proxies,
    "acme_challenge": check_acme_challenge,
    "acme_dns_provider": check_acme_dns_provider,
    "acme_wildcard": check_acme_wildcard,
    "acme_dns_propagation_seconds": check_acme_dns_propagation_seconds,
    "acme_rfc2136_server": check_acme_rfc2136_server,
    "acme_rfc2136_port": check_acme_rfc2136_port,
    "acme_rfc2136_key_name": check_acme_rfc2136_key_name,
    "acme_rfc2136_algorithm": check_acme_rfc2136_algorithm,
    "acme_dns_secret": check_acme_dns_secret,
    "http_port": check_http_port,
    "https_port": check_https_port,
    "public_url": check_public_url,
    "smtp_host": check_smtp_host,
    "smtp_port": check_smtp_port,
    "smtp_username": check_smtp_username,
    "smtp_password": check_smtp_password,
    "smtp_from": check_smtp_from,
    "backup_schedule": check_backup_schedule,
    "backup_keep": check_backup_keep,
    "apps": check_apps,
    "outpost_docker_socket": check_outpost_docker_socket,
}


def problem_with(question: str, value: Any, **answers: Any) -> str:
    """What is wrong with an answer ('' when nothing is): the text copier shows for a validator."""
    try:
        RULES[question](value, **answers)
    except AnswerProblem as problem:
        return str(problem)
    return ""


def answer_problems(answers: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with each answer of an answers file (only those with a problem). copier drops
    such an answer without a word on update and takes the default, so scaffold asks first."""
    import inspect  # only here: copier loads this module for every copy and update

    found = {}
    for question, rule in RULES.items():
        if question not in answers:
            continue
        parameters = inspect.signature(rule).parameters.values()
        depends_on = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
        if any(name not in answers for name in depends_on):
            continue
        try:
            problem = problem_with(
                question, answers[question], **{name: answers[name] for name in depends_on}
            )
        except (TypeError, ValueError) as exc:  # a hand-edited value of the wrong type
            problem = f"{shown(answers[question])} cannot be read ({exc})"
        if problem:
            found[question] = problem
    return found


# --- Quoting for the generated files ----------------------------------------------------------


def compose_string(value: object) -> str:
    """A YAML double-quoted scalar that Docker Compose reads back as exactly `value`.

    `$` is doubled (Compose would substitute `$NAME` from .env, secrets included); quotes,
    backslashes and anything unprintable (line breaks, YAML's own NEL/LS/PS) are escaped.
    """
    out = []
    for char in str(value):
        if char in '"\\':
            out.append("\\" + char)
        elif char == "$":
            out.append("$$")
        elif not char.isprintable():
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def json_string(value: object) -> str:
    """A JSON string, which YAML reads back as exactly `value` (blueprints: group names)."""
    import json

    return json.dumps(str(value), ensure_ascii=False)


#: What copier's Jinja environment gets (scaffold/copier_extension.py installs them).
TEMPLATE_GLOBALS: dict[str, Callable[..., Any]] = {"problem_with": problem_with}


def wildcard_covers(
    host: str, *, domain: str, acme_challenge: str = "http", acme_wildcard: bool = False
) -> bool:
    """True when the wildcard certificate of `domain` (DNS-01 with `acme_wildcard`) names `host`: one
    label left of `domain`, as RFC 6125 matches. Such an app host needs no certificate of its own."""
    if acme_challenge != "dns" or not acme_wildcard:
        return False
    head, _, rest = host.lower().partition(".")
    return bool(head) and rest == domain.lower()


TEMPLATE_FILTERS: dict[str, Callable[..., Any]] = {
    "is_copier_replica": is_copier_replica,
    "default_project_name": default_project_name,
    "acme_directory_url": acme_directory_url,
    "parsed_upstream_proxies": parse_upstream_proxies,
    "compose_string": compose_string,
    "parsed_apps": parse_apps,
    "app_public_port": app_public_port,
    "json_string": json_string,
    "dns_secret_stored": dns_secret_stored,
    "wildcard_covers": wildcard_covers,
    "certbot_image": certbot_image,
}
