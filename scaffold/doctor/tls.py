"""doctor's certificate checks: what nginx really serves for the domain, and for how long.

Let's Encrypt stopped sending expiry e-mails in 2025, so a renewal that fails quietly shows only when
browsers refuse the site. doctor reads the certificate nginx serves (over 127.0.0.1 with SNI = domain,
without verifying it, since the point is to look at it) and says whether it is the placeholder, for
the right name, and how long it has left. Skipped with --offline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scaffold.doctor.core import (
    Check,
    Context,
    Fact,
    Outcome,
    Status,
    fail,
    ok,
    parse_docker_time,
    skip,
    warn,
)
from scaffold.doctor.probes import fetch_served_certificate

#: The subject CN of the self-signed certificate certbot's helper serves until the first issuance
#: (template/certbot/scaffold_certbot.py, PLACEHOLDER_SUBJECT).
PLACEHOLDER_SUBJECT = "scaffold placeholder certificate"
#: The pair certbot's helper points nginx at (template/nginx/snippets/tls.conf reads it through a
#: link of nginx's own, which falls back to the placeholder when nginx cannot load this pair).
CURRENT = Path("letsencrypt/scaffold/current")
CURRENT_CERT = CURRENT / "fullchain.pem"
WARN_DAYS = 14
#: How long the placeholder may be served after certbot started before doctor calls it a failure.
PLACEHOLDER_GRACE = dt.timedelta(days=1)
_STAGING = re.compile(r"\(STAGING\)|Fake LE|staging", re.I)


@dataclass(frozen=True)
class CertInfo:
    """The parts of a certificate doctor judges."""

    subject_cn: str | None
    issuer: str
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    self_signed: bool
    fingerprint: str  # SHA-256 of the DER encoding


def cert_info(der: bytes, *, prefer_cryptography: bool = True) -> CertInfo:
    """Parse a DER certificate with `cryptography` when installed, else with the ssl module."""
    if prefer_cryptography:
        try:
            return _info_cryptography(der)
        except ImportError:
            pass
    return _info_ssl(der)


def _info_cryptography(der: bytes) -> CertInfo:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)

    def cn(name: x509.Name) -> str | None:
        values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else None

    def describe(name: x509.Name) -> str:
        parts = [
            str(attr.value)
            for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME)
            for attr in name.get_attributes_for_oid(oid)
        ]
        return ", ".join(parts) or name.rfc4514_string()

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(
        subject_cn=cn(cert.subject),
        issuer=describe(cert.issuer),
        names=names,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=cert.issuer == cert.subject,
        fingerprint=hashlib.sha256(der).hexdigest(),
    )


def _info_ssl(der: bytes) -> CertInfo:
    """The stdlib route: ssl can only decode a certificate from a PEM file."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    fd, name = tempfile.mkstemp(prefix="scaffold-doctor-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        decoded = ssl._ssl._test_decode_cert(name)  # type: ignore[attr-defined]
    finally:
        os.unlink(name)

    def flat(rdns: tuple) -> dict[str, str]:
        return {key: value for rdn in rdns for key, value in rdn}

    subject, issuer = flat(decoded.get("subject", ())), flat(decoded.get("issuer", ()))

    def when(text: str) -> dt.datetime:
        return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), dt.UTC)

    described = ", ".join(v for v in (issuer.get("commonName"), issuer.get("organizationName")) if v)
    return CertInfo(
        subject_cn=subject.get("commonName"),
        issuer=described or "unknown",
        names=tuple(value for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS"),
        not_before=when(decoded["notBefore"]),
        not_after=when(decoded["notAfter"]),
        self_signed=decoded.get("subject") == decoded.get("issuer"),
        fingerprint=hashlib.sha256(der).hexdigest(),
    )


def name_matches(pattern: str, domain: str) -> bool:
    """RFC 6125 matching: exact, or a `*.` wildcard covering exactly one leftmost label."""
    pattern, domain = pattern.lower().rstrip("."), domain.lower().rstrip(".")
    if pattern == domain:
        return True
    if pattern.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def _age(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def evaluate_certificate(
    info: CertInfo,
    *,
    domain: str,
    now: dt.datetime,
    certbot_started: dt.datetime | None,
    source: str,
    stack_running: bool = True,
    wanted: tuple[str, ...] = (),
    dns_challenge: bool = False,
) -> dict[str, Outcome]:
    """Outcomes for tls.certificate-issued, -names and -expiry. `certbot_started` None: not running.

    `wanted`: every name the certificate must carry (the domain, `*.domain` with acme_wildcard)."""
    issuance_fix = (
        "`docker compose logs certbot` says why; the usual causes: "
        f"{domain} does not resolve to this host (see network.dns), or port 80 of the public address does "
        "not reach this host's nginx (router forwarding, firewall; see network.port-http). After fixing, "
        "`docker compose restart certbot` retries at once"
    )
    if dns_challenge:
        issuance_fix = (
            "`docker compose logs certbot` says why (tls.acme-last-attempt too); the usual causes: a wrong "
            "TSIG secret or API token, a zone the server or account does not hold, or a TXT record that "
            "is not visible yet (see tls.dns-credentials and tls.dns-server). After fixing, "
            "`docker compose restart certbot` retries at once"
        )
    if info.subject_cn == PLACEHOLDER_SUBJECT:
        issued = _placeholder(source, now, certbot_started, stack_running, issuance_fix)
    else:
        issued = _issuer(info, source, domain)
    return {
        "issued": issued,
        "names": _names(info, source, domain, issuance_fix, wanted),
        "expiry": _expiry(info, source, now, issuance_fix),
    }


def _placeholder(
    source: str, now: dt.datetime, certbot_started: dt.datetime | None, stack_running: bool, issuance_fix: str
) -> Outcome:
    """The placeholder is served: fine for a minute after certbot starts, a failure after a day."""
    if certbot_started is None and not stack_running:
        return warn(
            f"{source} is the self-signed placeholder, and the stack is not running, so certbot cannot "
            "replace it",
            f"`docker compose up -d`; if the placeholder stays, {issuance_fix}",
        )
    if certbot_started is None:
        return fail(
            f"{source} is still the self-signed placeholder and certbot is not running: no certificate "
            "will ever be issued",
            f"`docker compose up -d certbot`, then {issuance_fix}",
        )
    if now - certbot_started > PLACEHOLDER_GRACE:
        return fail(
            f"{source} is still the self-signed placeholder {_age(now - certbot_started)} after certbot "
            "started: issuance keeps failing and browsers refuse the site",
            issuance_fix,
        )
    return warn(
        f"{source} is still the self-signed placeholder; certbot started "
        f"{_age(now - certbot_started)} ago and usually needs a minute",
        f"wait a few minutes; if it stays, {issuance_fix}",
    )


def _issuer(info: CertInfo, source: str, domain: str) -> Outcome:
    """Who issued a certificate that is not the placeholder: a trusted CA, a staging CA, or nobody."""
    if _STAGING.search(info.issuer):
        return warn(
            f"{source} comes from a staging CA ({info.issuer}): browsers do not trust it",
            "switch to the real CA: `scaffold update --data acme_server=letsencrypt`, then "
            "`docker compose up -d`; certbot replaces the certificate",
        )
    if info.self_signed:
        return warn(
            f"{source} is self-signed ({info.issuer}), not issued by a CA: browsers refuse it",
            f"let certbot manage letsencrypt/scaffold/current (it points at live/{domain}): "
            "`docker compose restart certbot`",
        )
    return ok(f"{source} is issued by {info.issuer}")


def _names(
    info: CertInfo, source: str, domain: str, issuance_fix: str, wanted: tuple[str, ...] = ()
) -> Outcome:
    names = info.names or ((info.subject_cn,) if info.subject_cn else ())
    missing = [name for name in wanted if name != domain and name not in names]
    if missing and any(name_matches(name, domain) for name in names):
        return warn(
            f"{source} is valid for {domain} but does not name {', '.join(missing)} (acme_wildcard)",
            f"certbot requests the wildcard at its next attempt: `docker compose restart certbot`; "
            f"if it stays, {issuance_fix}",
        )
    if any(name_matches(name, domain) for name in names):
        return ok(f"{source} is valid for {', '.join(wanted) if len(wanted) > 1 else domain}")
    return fail(
        f"{source} is for {', '.join(names) or 'no name'}, not {domain}: browsers refuse it",
        f"certbot requests a certificate for the `domain` answer ({domain}); {issuance_fix}",
    )


def _expiry(info: CertInfo, source: str, now: dt.datetime, issuance_fix: str) -> Outcome:
    left = info.not_after - now
    until = info.not_after.strftime("%Y-%m-%d %H:%M UTC")
    renew_fix = (
        "certbot renews when a third of the lifetime is left, so renewal has been failing (Let's Encrypt no "
        f"longer e-mails about expiry): {issuance_fix}"
    )
    if info.not_before > now:
        return fail(
            f"{source} is not valid before {info.not_before:%Y-%m-%d %H:%M UTC}: this host's clock is wrong",
            "fix the clock (`timedatectl set-ntp true`), then `docker compose restart certbot`",
        )
    if left.total_seconds() <= 0:
        return fail(f"{source} expired on {until} ({_age(-left)} ago): browsers refuse the site", renew_fix)
    if left < dt.timedelta(days=WARN_DAYS):
        return warn(f"{source} expires on {until}, in {_age(left)}", renew_fix)
    return ok(f"{source} is valid until {until} ({left.days} days left)")


def read_pem_certificate(path: Path) -> bytes:
    """The first certificate of a PEM file, as DER."""
    text = path.read_text(encoding="ascii", errors="replace")
    match = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
    if match is None:
        raise ValueError(f"{path} holds no PEM certificate")
    return ssl.PEM_cert_to_DER_cert(match.group(0))


def load_problem(directory: Path) -> str | None:
    """Why nginx cannot load the fullchain.pem/privkey.pem pair in `directory`; None when it can.

    The same test nginx makes at start (OpenSSL reads the chain and the key and matches them),
    made with the ssl module so that doctor needs no extra package. Names and dates are judged on
    what nginx serves, by the other tls checks. Raises OSError when the files cannot be read.
    """
    chain, key = directory / "fullchain.pem", directory / "privkey.pem"
    for path in (chain, key):
        with path.open("rb"):  # FileNotFoundError / PermissionError for the caller
            pass
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key would prompt on the terminal: answer with an empty password instead.
        context.load_cert_chain(chain, key, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc):
            return "privkey.pem is not the key of the first certificate in fullchain.pem"
        return f"OpenSSL cannot read the pair ({reason})"
    return None


@dataclass
class Observed:
    """What doctor could see of the certificate, gathered once for all tls checks."""

    served: CertInfo | None = None
    on_disk: CertInfo | None = None
    serve_error: str | None = None  # nothing answered / TLS refused
    tls_refused: bool = False
    disk_error: str | None = None


@Fact
def observe(ctx: Context) -> Observed:
    """The certificate nginx serves and the one in `current`, or why each cannot be seen."""
    seen = Observed()
    if ctx.docker is None or ctx.docker.is_local:
        try:
            seen.served = cert_info(fetch_served_certificate(ctx.https_port, ctx.domain))
        except ssl.SSLError as exc:
            seen.serve_error, seen.tls_refused = f"the TLS handshake failed ({exc.reason or exc})", True
        except OSError as exc:
            seen.serve_error = f"nothing answers on 127.0.0.1:{ctx.https_port} ({exc.strerror or exc})"
    else:
        seen.serve_error = f"the Docker daemon ({ctx.docker.endpoint}) is on another host"
    path = ctx.root / CURRENT_CERT
    try:
        seen.on_disk = cert_info(read_pem_certificate(path))
    except FileNotFoundError:
        seen.disk_error = f"{CURRENT_CERT} does not exist yet"
    except PermissionError:
        seen.disk_error = f"{CURRENT_CERT} cannot be read (permission denied; run doctor as root)"
    except (OSError, ValueError) as exc:
        seen.disk_error = f"{CURRENT_CERT} cannot be read ({exc})"
    return seen


@Fact
def _evaluated(ctx: Context) -> dict[str, Outcome] | Outcome:
    """The three judgements, or the one skip/fail that replaces them."""
    seen = observe(ctx)
    result: dict[str, Outcome] | Outcome
    if seen.tls_refused:
        result = fail(
            f"nginx on port {ctx.https_port} refuses TLS for {ctx.domain}: {seen.serve_error}. No server "
            f"block has `server_name {ctx.domain}` with a certificate",
            "`docker compose exec nginx nginx -T | grep server_name` shows the names nginx serves; restore "
            "nginx/conf.d/authentik.conf (`git diff nginx/`) and `docker compose exec nginx nginx -s reload`",
        )
    elif seen.served is None and seen.on_disk is None:
        result = skip(
            f"not checked: {seen.serve_error}, and {seen.disk_error}",
            "start the stack with `docker compose up -d` to run this check",
        )
    else:
        info = seen.served or seen.on_disk
        assert info is not None
        source = (
            f"the certificate nginx serves for {ctx.domain}"
            if seen.served is not None
            else f"the certificate in {CURRENT_CERT} (not served: {seen.serve_error})"
        )
        certbot = ctx.running("certbot")
        started = parse_docker_time(certbot.started_at) if certbot else None
        if certbot is not None and started is None:
            started = ctx.now
        result = evaluate_certificate(
            info,
            domain=ctx.domain,
            now=ctx.now,
            certbot_started=started,
            source=source,
            stack_running=ctx.docker is not None and ctx.stack_running,
            wanted=ctx.answers.certificate_names,
            dns_challenge=ctx.answers.dns_challenge,
        )
    return result


def _pick(ctx: Context, key: str) -> Outcome:
    result = _evaluated(ctx)
    if isinstance(result, Outcome):
        if result.status == Status.FAIL and key != "names":
            return skip("not checked: nginx serves no certificate for the domain (see tls.certificate-names)")
        return result
    return result[key]


def check_issued(ctx: Context) -> Outcome:
    return _pick(ctx, "issued")


def check_names(ctx: Context) -> Outcome:
    return _pick(ctx, "names")


def check_expiry(ctx: Context) -> Outcome:
    return _pick(ctx, "expiry")


def check_loaded(ctx: Context) -> Outcome:
    seen = observe(ctx)
    if seen.served is None:
        return skip(f"not checked: {seen.serve_error}")
    if isinstance(_loadable(ctx), str):
        return skip("not compared: nginx cannot load the current certificate (see tls.certificate-loadable)")
    if seen.on_disk is None:
        return skip(f"not checked: {seen.disk_error}")
    if seen.served.fingerprint != seen.on_disk.fingerprint:
        return warn(
            f"nginx serves another certificate (valid until {seen.served.not_after:%Y-%m-%d}) than "
            f"{CURRENT_CERT} holds (valid until {seen.on_disk.not_after:%Y-%m-%d}): nginx did not "
            "reload after the last change; its watcher reloads only when `nginx -t` passes",
            "`docker compose exec nginx nginx -t` shows what blocks the reload; fix it, then "
            "`docker compose exec nginx nginx -s reload`",
        )
    return ok(f"nginx serves the certificate in {CURRENT_CERT}")


@Fact
def _loadable(ctx: Context) -> str | Outcome | None:
    """The load problem of `current`'s pair, None when nginx can load it, or the skip that applies."""
    try:
        return load_problem(ctx.root / CURRENT)
    except FileNotFoundError:
        return skip(f"not checked: {CURRENT} does not point at a certificate yet (certbot creates it)")
    except PermissionError:
        return skip(
            f"not checked: the files in {CURRENT} cannot be read (permission denied)",
            "run doctor as root",
        )
    except OSError as exc:
        return skip(f"not checked: the files in {CURRENT} cannot be read ({exc.strerror or exc})")


def check_loadable(ctx: Context) -> Outcome:
    """Say why nginx serves the placeholder: `current` holds a pair nginx cannot load."""
    problem = _loadable(ctx)
    if isinstance(problem, Outcome):
        return problem
    target = os.readlink(ctx.root / CURRENT) if (ctx.root / CURRENT).is_symlink() else str(CURRENT)
    if problem is None:
        return ok(f"nginx can load the certificate and key {CURRENT} points at ({target})")
    served = observe(ctx).served
    now = (
        "nginx serves the self-signed placeholder instead"
        if served is not None and served.subject_cn == PLACEHOLDER_SUBJECT
        else "nginx keeps the certificate it loaded before, and serves the placeholder after a restart"
    )
    return fail(
        f"{CURRENT} points at {target}, which nginx cannot load: {problem}. {now}, so that ports 80 and "
        "443 stay up; certbot switches only to a certificate it checked",
        "`docker compose logs certbot nginx` say what was refused. `docker compose restart certbot` "
        "points current at a usable certificate, requesting a new one when certbot's own files are "
        "broken; nginx reloads by itself",
    )


CHECKS = (
    Check("tls.certificate-loadable", check_loadable),
    Check("tls.certificate-issued", check_issued),
    Check("tls.certificate-names", check_names),
    Check("tls.certificate-expiry", check_expiry),
    Check("tls.certificate-loaded", check_loaded),
)
