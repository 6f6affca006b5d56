"""One-shot helpers for the certbot service's loop (certbot-loop.sh).

Runs inside the certbot image, which always has Python and `cryptography` (certbot needs
both). Each call does one small job and exits, so no Python process stays resident between
renewals. nginx reads the certificate through the `current` link, which points either at
the self-signed placeholder or at certbot's live lineage; every change of certificate writes
a new value to the `generation` file, which nginx's watcher turns into a checked reload.

Commands:
  placeholder        make the placeholder (if needed) and make sure `current` points somewhere
  wait-for-webroot   wait until nginx serves a test file from the ACME webroot
  has-certificate    exit 0 when a certificate from $ACME_SERVER exists for $DOMAIN
  needs-new-ca       exit 0 when the certificate on disk comes from another ACME server
  activate           (certbot's deploy hook) point `current` at $RENEWED_LINEAGE, signal nginx
  activate-existing  point `current` at the existing lineage if it does not already
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
CURRENT = STATE / "current"
PLACEHOLDER = STATE / "placeholder"
GENERATION = STATE / "generation"
WEBROOT = Path(os.environ.get("WEBROOT", "/var/www/acme"))
PLACEHOLDER_SUBJECT = "scaffold placeholder certificate"


def log(message: str) -> None:
    print(f"[certbot-helper] {message}", flush=True)


def domain() -> str:
    return os.environ["DOMAIN"]


def lineage_dir(name: str) -> Path:
    return LETSENCRYPT / "live" / name


def has_lineage(name: str) -> bool:
    live = lineage_dir(name)
    return (live / "fullchain.pem").exists() and (live / "privkey.pem").exists()


def lineage_server(name: str) -> str | None:
    """The ACME directory a lineage renews against, from certbot's renewal config."""
    conf = LETSENCRYPT / "renewal" / f"{name}.conf"
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "server":
            return value.strip()
    return None


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
    if CURRENT.is_symlink() and os.readlink(CURRENT) == target:
        return False
    tmp = STATE / f".current.tmp-{secrets.token_hex(4)}"
    os.symlink(target, tmp)
    os.replace(tmp, CURRENT)
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
    PLACEHOLDER.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomically(PLACEHOLDER / "privkey.pem", key_pem, 0o600)
    write_atomically(PLACEHOLDER / "fullchain.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log(f"created a self-signed placeholder certificate for {domain()}")


def cmd_placeholder() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    if (CURRENT / "fullchain.pem").exists() and (CURRENT / "privkey.pem").exists():
        return 0
    if has_lineage(domain()):
        point_current_at(f"../live/{domain()}")
        signal_nginx("existing certificate")
        return 0
    if not ((PLACEHOLDER / "fullchain.pem").exists() and (PLACEHOLDER / "privkey.pem").exists()):
        make_placeholder()
    point_current_at("placeholder")
    signal_nginx("placeholder")
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
    name = domain()
    return 0 if has_lineage(name) and lineage_server(name) == os.environ["ACME_SERVER"] else 1


def cmd_needs_new_ca() -> int:
    name = domain()
    server = lineage_server(name)
    return 0 if has_lineage(name) and server is not None and server != os.environ["ACME_SERVER"] else 1


def cmd_activate() -> int:
    lineage = Path(os.environ.get("RENEWED_LINEAGE") or lineage_dir(domain()))
    point_current_at(f"../live/{lineage.name}")
    signal_nginx(f"certificate {lineage.name}")
    return 0


def cmd_activate_existing() -> int:
    name = domain()
    if has_lineage(name) and (point_current_at(f"../live/{name}") or not GENERATION.exists()):
        signal_nginx(f"certificate {name}")
    return 0


COMMANDS = {
    "placeholder": cmd_placeholder,
    "wait-for-webroot": cmd_wait_for_webroot,
    "has-certificate": cmd_has_certificate,
    "needs-new-ca": cmd_needs_new_ca,
    "activate": cmd_activate,
    "activate-existing": cmd_activate_existing,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
