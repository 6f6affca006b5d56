"""One-shot helpers for the certbot service's loop (certbot-loop.sh).

Runs inside the certbot image, which always has Python and `cryptography` (certbot needs
both). Each call does one small job and exits, so no Python process stays resident between
renewals. nginx reads the certificate through the `current` link, which points either at
the self-signed placeholder or at certbot's live lineage; every change of certificate writes
a new value to the `generation` file, which nginx's watcher turns into a checked reload.

`current` is only ever pointed at a usable pair (`pair_problem`): the chain and the key parse,
the key matches the leaf, the leaf names $DOMAIN and is in date. Files on disk are not trusted
because certbot wrote them once: a lineage can be truncated, edited or copied in by hand.

Every command works on $DOMAIN, or on the app host given after it (`placeholder app.example.com`),
whose `current` and `placeholder` live under scaffold/hosts/HOST/.

Commands:
  placeholder        make the placeholder (if needed) and make sure `current` points somewhere
  wait-for-webroot   wait until nginx serves a test file from the ACME webroot
  needs-new-ca       exit 0 when the certificate on disk comes from another ACME server
  set-aside-unusable move a lineage certbot cannot renew (files that do not parse, match or name
                     $DOMAIN) to scaffold/set-aside/, so that certbot requests a new certificate
  has-certificate    exit 0 when $DOMAIN has a certificate from $ACME_SERVER that `certbot renew`
                     can work with (usable but perhaps expired)
  activate           (certbot's deploy hook) point `current` at $RENEWED_LINEAGE if usable, signal nginx
  activate-existing  point `current` at the existing lineage if it does not already and it is usable
  needs-other-challenge  exit 0 when the lineage renews through another challenge than ACME_CHALLENGE
  check-dns-credentials  exit 0 when the DNS plugin's credentials file is there and private
  explain-dns-failure    say why the last DNS-01 attempt failed and what to check (from certbot's log)
  clear-failure          forget the last failure (after a success)
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LETSENCRYPT = Path(os.environ.get("LETSENCRYPT_DIR", "/etc/letsencrypt"))
STATE = LETSENCRYPT / "scaffold"
GENERATION = STATE / "generation"
WEBROOT = Path(os.environ.get("WEBROOT", "/var/www/acme"))
PLACEHOLDER_SUBJECT = "scaffold placeholder certificate"


def log(message: str) -> None:
    print(f"[certbot-helper] {message}", flush=True)


#: The host name this run works on: DOMAIN, or an app host given after the command.
_HOST: list[str] = []


def domain() -> str:
    return _HOST[0] if _HOST else os.environ["DOMAIN"]


def state_dir() -> Path:
    """Where `current` and `placeholder` of this host live: scaffold/ for DOMAIN (as before apps
    existed), scaffold/hosts/HOST/ for an app host. One lineage per host: a host that fails does
    not hold up the others, and adding or removing an app re-issues nobody else's certificate."""
    if domain() == os.environ["DOMAIN"]:
        return STATE
    return STATE / "hosts" / domain()


def current_link() -> Path:
    return state_dir() / "current"


def placeholder_dir() -> Path:
    return state_dir() / "placeholder"


def live_target(name: str) -> str:
    """The relative link target from this host's state folder to certbot's live lineage `name`."""
    return os.path.relpath(lineage_dir(name), state_dir())


def lineage_dir(name: str) -> Path:
    return LETSENCRYPT / "live" / name


def has_lineage(name: str) -> bool:
    live = lineage_dir(name)
    return (live / "fullchain.pem").exists() and (live / "privkey.pem").exists()


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125: exact, or a `*.` wildcard covering exactly one leftmost label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    head, _, rest = name.partition(".")
    return pattern.startswith("*.") and bool(head) and rest == pattern[2:]


def pair_problem(directory: Path, name: str, *, check_dates: bool = True) -> str | None:
    """Why the fullchain.pem/privkey.pem pair in `directory` must not be served for `name`; None if usable.

    `check_dates=False` asks only whether certbot can still renew the lineage (it renews expired ones).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain_pem = (directory / "fullchain.pem").read_bytes()
        key_pem = (directory / "privkey.pem").read_bytes()
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc}: {exc.filename})"
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        return "fullchain.pem holds no certificate that parses"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return "privkey.pem holds no unencrypted private key that parses"
    leaf = chain[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "privkey.pem is not the key of the first certificate in fullchain.pem"
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not any(name_matches(pattern, name) for pattern in names):
        return f"the certificate is for {', '.join(names) or 'no DNS name'}, not {name}"
    if not check_dates:
        return None
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 (runs on the certbot image's Python)
    if now < leaf.not_valid_before_utc:
        return f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now >= leaf.not_valid_after_utc:
        return f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def usable(directory: Path, what: str) -> bool:
    """True when the pair in `directory` may be served; otherwise say why in certbot's log."""
    problem = pair_problem(directory, domain())
    if problem is not None:
        log(f"not serving {what}: {problem}")
    return problem is None


def renewal_setting(name: str, setting: str) -> str | None:
    """One setting of a lineage's renewal config (certbot's `renewal/NAME.conf`)."""
    conf = LETSENCRYPT / "renewal" / f"{name}.conf"
    try:
        lines = conf.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == setting:
            return value.strip()
    return None


def lineage_server(name: str) -> str | None:
    """The ACME directory a lineage renews against, from certbot's renewal config."""
    return renewal_setting(name, "server")


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def point_current_at(target: str) -> bool:
    """Atomically make `current` a relative link to `target`; True when it changed."""
    if current_link().is_symlink() and os.readlink(current_link()) == target:
        return False
    state_dir().mkdir(parents=True, exist_ok=True)
    tmp = state_dir() / f".current.tmp-{secrets.token_hex(4)}"
    os.symlink(target, tmp)
    os.replace(tmp, current_link())
    return True


def signal_nginx(reason: str) -> None:
    """A new value in `generation` makes nginx's watcher run `nginx -t` and reload."""
    stamp = f"{time.time_ns()} {reason}\n"
    write_atomically(GENERATION, stamp.encode(), 0o644)
    log(f"asked nginx to reload ({reason})")


def make_placeholder() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PLACEHOLDER_SUBJECT)])
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 (runs on the certbot image's Python)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain())]), critical=False)
        .sign(key, hashes.SHA256())
    )
    placeholder = placeholder_dir()
    placeholder.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomically(placeholder / "privkey.pem", key_pem, 0o600)
    write_atomically(placeholder / "fullchain.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log(f"created a self-signed placeholder certificate for {domain()}")


def current_target() -> str:
    return os.readlink(current_link()) if current_link().is_symlink() else "nothing"


def cmd_placeholder() -> int:
    """At certbot's start: `current` must point at a usable pair, the lineage or else the placeholder."""
    state_dir().mkdir(parents=True, exist_ok=True)
    current = current_link()
    if current.exists() and pair_problem(current, domain()) is None:
        return 0
    if current.is_symlink():
        usable(current, f"{current} (-> {current_target()})")
    if has_lineage(domain()) and usable(lineage_dir(domain()), f"certbot's lineage {lineage_dir(domain())}"):
        point_current_at(live_target(domain()))
        signal_nginx(f"existing certificate {domain()}")
        return 0
    if pair_problem(placeholder_dir(), domain()) is not None:
        make_placeholder()
    if point_current_at("placeholder") or not GENERATION.exists():
        signal_nginx(f"placeholder {domain()}")
    return 0


def cmd_wait_for_webroot() -> int:
    """Serve a test file through nginx before asking the CA, so the first attempt counts."""
    host = os.environ.get("NGINX_HOST", "nginx")
    limit = float(os.environ.get("WEBROOT_WAIT_SECONDS", "120"))
    challenge_dir = WEBROOT / ".well-known" / "acme-challenge"
    challenge_dir.mkdir(parents=True, exist_ok=True)
    token = f"scaffold-check-{secrets.token_hex(8)}"
    probe = challenge_dir / token
    probe.write_text(token)
    url = f"http://{host}/.well-known/acme-challenge/{token}"
    request = urllib.request.Request(url, headers={"Host": domain()})
    deadline = time.monotonic() + limit
    last_error = ""
    try:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=3) as response:
                    if response.read().decode() == token:
                        log("nginx serves the ACME webroot")
                        return 0
                    last_error = "nginx answered with other content"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(1)
    finally:
        probe.unlink(missing_ok=True)
    log(f"nginx did not serve the ACME webroot within {limit:.0f}s ({last_error})")
    return 1


def cmd_has_certificate() -> int:
    """A lineage `certbot renew` can work with: from this CA, its files usable but for their dates,
    naming what the certificate should name (a wildcard added or dropped needs a new one)."""
    name = domain()
    if not has_lineage(name) or lineage_server(name) != os.environ["ACME_SERVER"]:
        return 1
    if pair_problem(lineage_dir(name), name, check_dates=False):
        return 1
    return 1 if names_differ(lineage_dir(name)) else 0


# --- DNS-01 (ACME_CHALLENGE=dns) and the certificate's names ----------------------------------------

LETSENCRYPT_LOG = Path(os.environ.get("CERTBOT_LOG", "/var/log/letsencrypt/letsencrypt.log"))
LAST_FAILURE = STATE / "last-failure"


def wanted_names() -> set[str]:
    """The names the certificate must carry: the host, and *.$DOMAIN for $DOMAIN with CERT_WILDCARD=true
    (an app host has a certificate of its own name only)."""
    names = {domain()}
    if os.environ.get("CERT_WILDCARD") == "true" and domain() == os.environ["DOMAIN"]:
        names.add(f"*.{domain()}")
    return names


def names_differ(directory: Path) -> bool:
    """True (and why, in the log) when the leaf's DNS names are not exactly `wanted_names()`."""
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificates((directory / "fullchain.pem").read_bytes())[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(san.get_values_for_type(x509.DNSName))
    except (OSError, ValueError, x509.ExtensionNotFound):
        return True
    if names == wanted_names():
        return False
    log(f"the certificate names {', '.join(sorted(names))}; wanted: {', '.join(sorted(wanted_names()))}")
    return True


def wanted_authenticator() -> str:
    if os.environ.get("ACME_CHALLENGE") == "dns":
        return f"dns-{os.environ.get('DNS_PLUGIN', '')}"
    return "webroot"


def cmd_needs_other_challenge() -> int:
    """A lineage certbot would renew through the other challenge (the answer changed): replace it once."""
    name = domain()
    used = renewal_setting(name, "authenticator")
    if not has_lineage(name) or used is None or used == wanted_authenticator():
        return 1
    log(f"the certificate was obtained with {used}, now {wanted_authenticator()}: requesting it again")
    return 0


def credentials_path() -> Path:
    return Path(os.environ.get("DNS_CREDENTIALS", "/run/scaffold-dns/credentials.ini"))


def record_failure(cause: str, fix: str) -> None:
    """Say it in the log, and keep it where `scaffold doctor` reads it (letsencrypt/scaffold/last-failure)."""
    log(f"DNS-01 failed: {cause}")
    log(f"  check: {fix}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_atomically(LAST_FAILURE, f"{stamp}\n{cause}\n{fix}\n".encode(), 0o644)


def cmd_check_dns_credentials() -> int:
    path = credentials_path()
    try:
        mode = path.stat().st_mode & 0o777
        path.read_bytes()
    except OSError as exc:
        record_failure(
            f"certbot cannot read its DNS credentials file {path} ({exc.strerror})",
            "run `scaffold detect` in the project folder: it writes .scaffold/dns/credentials.ini from the "
            "secret in .env; then `docker compose restart certbot`",
        )
        return 1
    if mode & 0o077:
        log(f"warning: {path} is readable by others (mode {mode:o}); `scaffold detect` makes it 0600")
    return 0


def _secret_in_credentials() -> str:
    """The secret value of the credentials file, to keep it out of anything printed."""
    try:
        for line in credentials_path().read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().endswith(("_secret", "_token", "_key")):
                return value.strip()
    except OSError:
        pass
    return ""


#: (words in certbot's log, the cause, what to check), first match wins.
DNS_FAILURES = (
    (
        ("HTTPSConnectionPool", "Max retries exceeded with url"),
        "certbot cannot reach the ACME server (not a DNS problem)",
        "ACME_SERVER (the acme_server answer), and that certbot's container can reach it (DNS, firewall, "
        "proxy)",
    ),
    (
        (
            "BADSIG",
            "BADKEY",
            "BADTIME",
            "NOTAUTH",
            "PeerBadSignature",
            "PeerBadKey",
            "didn't like the signature",
            "didn't know the key",
        ),
        "the DNS server refused certbot's TSIG key (wrong TSIG secret, key name or algorithm)",
        "CERTBOT_RFC2136_SECRET in .env, acme_rfc2136_key_name and acme_rfc2136_algorithm against the key "
        "on the DNS server; after changing .env run `scaffold detect`",
    ),
    (
        ("Invalid request headers", "Authentication error", "Unable to authenticate", "code 9109"),
        "the DNS provider refused the API token (wrong, expired or without Zone:DNS:Edit permission)",
        "CERTBOT_CLOUDFLARE_API_TOKEN in .env (a token with Zone:DNS:Edit on the zone); after changing "
        ".env run `scaffold detect`",
    ),
    (
        (
            "Unable to determine base domain",
            "Unable to determine zone",
            "zone not found",
            "NXDOMAIN looking up SOA",
        ),
        "the DNS zone of the domain was not found on the DNS server / at the provider",
        "that the server or account is authoritative for the zone holding the domain, and (rfc2136) "
        "acme_rfc2136_server and acme_rfc2136_port",
    ),
    (
        ("REFUSED",),
        "the DNS server refused the update",
        "that its update policy lets this TSIG key change TXT records of _acme-challenge names in the zone",
    ),
    (
        ("timed out", "Connection refused", "No route to host"),
        "the DNS server did not answer",
        "acme_rfc2136_server and acme_rfc2136_port, and that certbot's container can reach that server",
    ),
    (
        ("No TXT record found", "Incorrect TXT record", "NXDOMAIN looking up TXT", "DNS problem"),
        "the CA did not see the TXT record yet (the record is not visible from the internet)",
        "raise acme_dns_propagation_seconds, and that every public name server of the zone receives the "
        "update (secondary servers, split DNS)",
    ),
)


def _explained_since_certbot_ran() -> bool:
    """A failure recorded after certbot's last log (a missing credentials file: certbot did not run)."""
    try:
        return LAST_FAILURE.stat().st_mtime >= LETSENCRYPT_LOG.stat().st_mtime
    except OSError:
        return False


def cmd_explain_dns_failure() -> int:
    if _explained_since_certbot_ran():
        return 0
    try:
        text = LETSENCRYPT_LOG.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for words, cause, fix in DNS_FAILURES:
        if any(word in text for word in words):
            record_failure(cause, fix)
            return 0
    secret = _secret_in_credentials()
    errors = [line for line in text.splitlines() if "Error" in line or "error" in line]
    last = errors[-1].strip() if errors else "no error in certbot's log"
    if secret:
        last = last.replace(secret, "<secret>")
    record_failure(
        f"certbot could not complete the DNS-01 challenge ({last[-300:]})", "certbot's messages above"
    )
    return 0


def cmd_clear_failure() -> int:
    LAST_FAILURE.unlink(missing_ok=True)
    return 0


def cmd_needs_new_ca() -> int:
    name = domain()
    server = lineage_server(name)
    return 0 if has_lineage(name) and server is not None and server != os.environ["ACME_SERVER"] else 1


def cmd_set_aside_unusable() -> int:
    """Move a lineage whose files do not parse, match or name the domain out of certbot's way.

    certbot cannot renew it (it reads the old key, and fails), nor request a new one under the same
    name while it exists. Kept, not deleted, under scaffold/set-aside/ for whoever wants to know how
    it got there.
    """
    name = domain()
    if not has_lineage(name):
        return 0
    problem = pair_problem(lineage_dir(name), name, check_dates=False)
    if problem is None:
        return 0
    if current_link().is_symlink() and os.readlink(current_link()) == live_target(name):
        cmd_placeholder()  # points nginx away from it first
    aside = STATE / "set-aside" / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    aside.mkdir(parents=True, exist_ok=True)
    moves = (
        (lineage_dir(name), "live"),
        (LETSENCRYPT / "archive" / name, "archive"),
        (LETSENCRYPT / "renewal" / f"{name}.conf", "renewal.conf"),
    )
    for source, target in moves:
        if source.exists() or source.is_symlink():
            os.replace(source, aside / target)
    log(f"certbot's lineage for {name} is unusable ({problem}): moved it to {aside}; requesting a new one")
    return 0


def cmd_activate() -> int:
    lineage = Path(os.environ.get("RENEWED_LINEAGE") or lineage_dir(domain()))
    _HOST[:] = [lineage.name]  # certbot names the lineage after the host (--cert-name)
    if not usable(lineage, f"the new certificate {lineage}"):
        log(f"`current` stays at {current_target()}; nginx keeps serving what it serves")
        return 1
    point_current_at(live_target(lineage.name))
    signal_nginx(f"certificate {lineage.name}")
    return 0


def cmd_activate_existing() -> int:
    name = domain()
    if not has_lineage(name) or pair_problem(lineage_dir(name), name) is not None:
        return 0  # has-certificate or the deploy hook already said why
    if point_current_at(live_target(name)) or not GENERATION.exists():
        signal_nginx(f"certificate {name}")
    return 0


COMMANDS = {
    "placeholder": cmd_placeholder,
    "wait-for-webroot": cmd_wait_for_webroot,
    "has-certificate": cmd_has_certificate,
    "needs-new-ca": cmd_needs_new_ca,
    "set-aside-unusable": cmd_set_aside_unusable,
    "activate": cmd_activate,
    "activate-existing": cmd_activate_existing,
    "needs-other-challenge": cmd_needs_other_challenge,
    "check-dns-credentials": cmd_check_dns_credentials,
    "explain-dns-failure": cmd_explain_dns_failure,
    "clear-failure": cmd_clear_failure,
}


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    _HOST[:] = argv[1:]
    try:
        return COMMANDS[argv[0]]()
    except OSError as exc:  # e.g. `current` made a directory by hand, a read-only volume
        log(f"{argv[0]} failed: {exc.strerror or exc}: {exc.filename or ''} (fix it, then restart certbot)")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
