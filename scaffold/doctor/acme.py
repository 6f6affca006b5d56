"""doctor's certificate-challenge checks: which ACME challenge is in use and whether it can succeed.

With DNS-01 nothing on the host shows a failing challenge until the certificate runs out: certbot's
plugin needs its credentials file (written by scaffold from `.env`), and for rfc2136 a DNS server that
answers and accepts the TSIG key. These checks look at each, and at the cause certbot recorded for its
last failed attempt (letsencrypt/scaffold/last-failure, written by certbot's helper). Secrets are
compared and used, never shown.
"""

from __future__ import annotations

import os
from pathlib import Path

from scaffold.answer_rules import DNS_PROVIDERS
from scaffold.dnscreds import credentials_text, provider_of
from scaffold.doctor.core import Check, Context, Outcome, fail, ok, skip, warn

LAST_FAILURE = Path("letsencrypt/scaffold/last-failure")
_DETECT = "run `scaffold detect` (it writes the file from .env), then `docker compose restart certbot`"


def check_challenge(ctx: Context) -> Outcome:
    answers = ctx.answers
    if not answers.dns_challenge:
        return ok(f"HTTP-01: the CA fetches a file from http://{ctx.domain}/.well-known/acme-challenge/")
    if answers.acme_dns_provider not in DNS_PROVIDERS:
        return fail(
            f"the DNS provider {answers.acme_dns_provider!r} is not one this template supports",
            f"`scaffold update --data acme_dns_provider=...` with one of {', '.join(DNS_PROVIDERS)}",
        )
    names = " and ".join(answers.certificate_names)
    port = "no HTTP port published" if ctx.http_port == 0 else f"HTTP port {ctx.http_port} redirects"
    return ok(f"DNS-01 through the {answers.acme_dns_provider} plugin, for {names} ({port})")


def check_credentials(ctx: Context) -> Outcome:
    provider = provider_of(ctx.answers)
    if provider is None:
        return skip("not needed: the HTTP challenge uses no DNS credentials")
    path = ctx.layout.dns_credentials
    shown = path.relative_to(ctx.root)
    secret = ctx.env_value(provider.env_key)
    if secret is None:
        return fail(
            f"{provider.env_key} is not in .env: certbot has no {provider.secret_word} for "
            f"{ctx.answers.acme_dns_provider}",
            f"add `{provider.env_key}=...` to .env (or `scaffold update --data acme_dns_secret=...`), then "
            + _DETECT,
        )
    try:
        mode = os.lstat(path).st_mode & 0o777
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return fail(f"{shown} does not exist: certbot cannot create the TXT record", _DETECT)
    except OSError as exc:
        return fail(f"{shown} cannot be read ({exc.strerror})", _DETECT)
    if path.is_symlink() or mode != 0o600:
        return fail(
            f"{shown} has mode {mode:o}" + (" and is a symbolic link" if path.is_symlink() else ""),
            f"it holds the {provider.secret_word}: `chmod 600 {shown}`, or delete it and " + _DETECT,
        )
    if current != credentials_text(ctx.answers, secret):
        return warn(
            f"{shown} does not say what .env and the answers say (changed since `scaffold detect` last ran)",
            _DETECT,
        )
    return ok(f"{shown} exists with mode 0600 and matches .env and the answers")


def check_dns_server(ctx: Context) -> Outcome:
    answers = ctx.answers
    if provider_of(answers) is None or answers.acme_dns_provider != "rfc2136":
        return skip("not checked: only for the rfc2136 DNS provider")
    if ctx.offline:
        return skip("not checked with --offline")
    secret = ctx.env_value(DNS_PROVIDERS["rfc2136"].env_key)
    if secret is None:
        return skip("not checked: no TSIG secret in .env (see tls.dns-credentials)")
    from scaffold import dnsquery

    where = f"{answers.acme_rfc2136_server}:{answers.acme_rfc2136_port}"
    try:
        answer = dnsquery.query(
            answers.acme_rfc2136_server,
            answers.acme_rfc2136_port,
            ctx.domain,
            answers.acme_rfc2136_key_name,
            answers.acme_rfc2136_algorithm,
            secret,
        )
    except (OSError, ValueError) as exc:
        return fail(
            f"the DNS server {where} does not answer a signed query from this host ({exc})",
            "check acme_rfc2136_server and acme_rfc2136_port, that the server runs, and that certbot's "
            "container can reach it",
        )
    if answer.rcode == "NOTAUTH":
        return fail(
            f"the DNS server {where} refuses the TSIG key {answers.acme_rfc2136_key_name} "
            f"({answer.tsig_error or 'NOTAUTH'}): the secret, the key name or the algorithm is wrong",
            f"compare CERTBOT_RFC2136_SECRET in .env, acme_rfc2136_key_name and acme_rfc2136_algorithm "
            f"({answers.acme_rfc2136_algorithm}) with the key on the server; then " + _DETECT,
        )
    if answer.rcode == "REFUSED":
        return fail(
            f"the DNS server {where} refuses to answer for {ctx.domain}: it is not authoritative for "
            "its zone",
            "point acme_rfc2136_server at the primary server of the zone that holds the domain",
        )
    if answer.rcode not in ("NOERROR", "NXDOMAIN"):
        return warn(
            f"the DNS server {where} answers {answer.rcode} for {ctx.domain}", "check the server's log"
        )
    return ok(f"the DNS server {where} answers for {ctx.domain} and accepts the TSIG key")


def check_last_attempt(ctx: Context) -> Outcome:
    if not ctx.answers.dns_challenge:
        return skip("not checked: certbot's helper records DNS-01 failures only")
    try:
        stamp, cause, fix = (ctx.root / LAST_FAILURE).read_text(encoding="utf-8").splitlines()[:3]
    except FileNotFoundError:
        return ok("certbot recorded no failed DNS-01 attempt since its last success")
    except (OSError, ValueError) as exc:
        return skip(f"not checked: {LAST_FAILURE} cannot be read ({exc})")
    return fail(f"certbot's last DNS-01 attempt failed ({stamp}): {cause}", f"check {fix}")


CHECKS = (
    Check("tls.acme-challenge", check_challenge),
    Check("tls.dns-credentials", check_credentials),
    Check("tls.dns-server", check_dns_server),
    Check("tls.acme-last-attempt", check_last_attempt),
)
