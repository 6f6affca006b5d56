"""certbot's helper (template/certbot/scaffold_certbot.py) never points nginx at a pair it did not check.

The helper runs in the certbot image, which has Python and `cryptography`; here it runs the same way,
as a subprocess on a letsencrypt/ folder laid out as certbot lays it out, so no container is needed.
What a user observes: where `current` points, whether nginx was signalled (`generation`), and the log.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tests.helpers.doctorrun import make_cert
from tests.helpers.stack import REPO_ROOT

HELPER = REPO_ROOT / "template" / "certbot" / "scaffold_certbot.py"
DOMAIN = "sso.example.test"
ACME_SERVER = "https://pebble.example.test/dir"
NOW = dt.datetime.now(dt.UTC)


def helper(letsencrypt: Path, command: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HELPER), command, *args],
        env={
            **os.environ,
            "DOMAIN": DOMAIN,
            "ACME_SERVER": ACME_SERVER,
            "LETSENCRYPT_DIR": str(letsencrypt),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_pair(folder: Path, chain: bytes | str, key: bytes | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("fullchain.pem", chain), ("privkey.pem", key)):
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)


def good_pair(**kwargs) -> tuple[str, bytes]:
    der, key = make_cert(cn=DOMAIN, names=(DOMAIN,), **kwargs)
    return ssl.DER_cert_to_PEM_cert(der), key


@pytest.fixture
def letsencrypt(tmp_path: Path) -> Path:
    """A stack after its first start: placeholder served, a renewal file for this CA."""
    root = tmp_path / "letsencrypt"
    result = helper(root, "placeholder")
    assert result.returncode == 0, result.stderr
    (root / "renewal").mkdir()
    (root / "renewal" / f"{DOMAIN}.conf").write_text(f"version = 5.1.0\nserver = {ACME_SERVER}\n")
    return root


def state(letsencrypt: Path) -> tuple[str, str]:
    scaffold = letsencrypt / "scaffold"
    return os.readlink(scaffold / "current"), (scaffold / "generation").read_text()


def unusable_pairs() -> dict[str, tuple[str | bytes, str | bytes, str]]:
    chain, _ = good_pair()
    _, other_key = good_pair()
    wrong_name, wrong_name_key = make_cert(cn="other.example.test", names=("other.example.test",))
    expired, expired_key = good_pair(
        not_before=NOW - dt.timedelta(days=90), not_after=NOW - dt.timedelta(days=1)
    )
    return {
        "garbage": ("garbage\n", "garbage\n", "fullchain.pem holds no certificate that parses"),
        "empty-key": (chain, "", "privkey.pem holds no unencrypted private key"),
        "key-of-another-certificate": (
            chain,
            other_key,
            "privkey.pem is not the key of the first certificate",
        ),
        "other-name": (ssl.DER_cert_to_PEM_cert(wrong_name), wrong_name_key, "is for other.example.test"),
        "expired": (expired, expired_key, "the certificate expired on"),
    }


@pytest.mark.parametrize("case", list(unusable_pairs()))
def test_deploy_hook_never_switches_nginx_to_an_unusable_certificate(letsencrypt: Path, case: str) -> None:
    chain, key, reason = unusable_pairs()[case]
    lineage = letsencrypt / "live" / DOMAIN
    write_pair(lineage, chain, key)
    before = state(letsencrypt)
    result = helper(letsencrypt, "activate", RENEWED_LINEAGE=str(lineage))
    assert result.returncode == 1, result.stdout
    assert state(letsencrypt) == before, "current was switched, or nginx was signalled"
    assert reason in result.stdout and "`current` stays at placeholder" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    # Nor on the loop's next pass.
    assert helper(letsencrypt, "activate-existing").returncode == 0
    assert state(letsencrypt) == before


def test_deploy_hook_switches_to_a_usable_certificate(letsencrypt: Path) -> None:
    lineage = letsencrypt / "live" / DOMAIN
    write_pair(lineage, *good_pair())
    generation = state(letsencrypt)[1]
    result = helper(letsencrypt, "activate", RENEWED_LINEAGE=str(lineage))
    assert result.returncode == 0, result.stdout
    assert state(letsencrypt)[0] == f"../live/{DOMAIN}"
    assert state(letsencrypt)[1] != generation


def test_certbot_start_points_current_away_from_a_pair_that_broke(letsencrypt: Path) -> None:
    """`current` already at the lineage, whose files were then overwritten: back to the placeholder."""
    lineage = letsencrypt / "live" / DOMAIN
    write_pair(lineage, *good_pair())
    assert helper(letsencrypt, "activate", RENEWED_LINEAGE=str(lineage)).returncode == 0
    write_pair(lineage, "garbage\n", "garbage\n")
    generation = state(letsencrypt)[1]
    result = helper(letsencrypt, "placeholder")
    assert result.returncode == 0, result.stdout
    assert state(letsencrypt)[0] == "placeholder"
    assert state(letsencrypt)[1] != generation, "nginx was not told to load the placeholder"
    assert "fullchain.pem holds no certificate that parses" in result.stdout


def test_broken_placeholder_is_made_again(letsencrypt: Path) -> None:
    placeholder = letsencrypt / "scaffold" / "placeholder"
    (placeholder / "privkey.pem").write_text("truncated")
    result = helper(letsencrypt, "placeholder")
    assert result.returncode == 0, result.stdout
    assert "created a self-signed placeholder" in result.stdout
    assert helper(letsencrypt, "activate-existing").returncode == 0
    # The new placeholder is itself usable: the start check accepts it without a word.
    again = helper(letsencrypt, "placeholder")
    assert again.returncode == 0 and again.stdout == "", again.stdout


def test_broken_lineage_is_set_aside_and_an_expired_one_renewed(letsencrypt: Path) -> None:
    """certbot cannot renew a lineage whose key does not parse: it is moved aside, not renewed."""
    lineage = letsencrypt / "live" / DOMAIN
    chain, key = good_pair(not_before=NOW - dt.timedelta(days=90), not_after=NOW - dt.timedelta(days=1))
    write_pair(lineage, chain, key)
    assert helper(letsencrypt, "has-certificate").returncode == 0  # `certbot renew` handles dates
    assert helper(letsencrypt, "set-aside-unusable").stdout == ""
    assert lineage.exists()

    write_pair(lineage, "garbage\n", "garbage\n")
    (letsencrypt / "scaffold" / "current").unlink()
    (letsencrypt / "scaffold" / "current").symlink_to(f"../live/{DOMAIN}")
    assert helper(letsencrypt, "has-certificate").returncode == 1
    result = helper(letsencrypt, "set-aside-unusable")
    assert result.returncode == 0
    assert "is unusable (fullchain.pem holds no certificate that parses): moved it to" in result.stdout
    assert not lineage.exists() and not (letsencrypt / "renewal" / f"{DOMAIN}.conf").exists()
    (aside,) = (letsencrypt / "scaffold" / "set-aside").iterdir()
    assert (aside / "live" / "fullchain.pem").read_text() == "garbage\n"
    assert (aside / "renewal.conf").exists()
    assert state(letsencrypt)[0] == "placeholder", "current was left pointing at the moved lineage"


def test_files_a_user_can_break_give_a_message_not_a_traceback(letsencrypt: Path) -> None:
    (letsencrypt / "renewal" / f"{DOMAIN}.conf").write_bytes(b"server = \xff\xfe\n")
    write_pair(letsencrypt / "live" / DOMAIN, *good_pair())
    assert helper(letsencrypt, "has-certificate").returncode == 1
    current = letsencrypt / "scaffold" / "current"
    current.unlink()
    current.mkdir()
    (current / "x").write_text("a directory where the link belongs")
    result = helper(letsencrypt, "activate-existing")
    assert result.returncode == 1
    assert "activate-existing failed" in result.stdout and "Traceback" not in result.stderr, result


# --------------------------------------------------------------------------- one lineage per app host

APP = "web.example.test"


def test_an_app_host_gets_its_own_placeholder_and_lineage_apart_from_the_domain(
    letsencrypt: Path,
) -> None:
    """Issue 15: the commands take the app host after them; its state lives in scaffold/hosts/HOST/."""
    domain_before = os.readlink(letsencrypt / "scaffold" / "current")
    run = helper(letsencrypt, "placeholder", APP)
    assert run.returncode == 0, run.stdout + run.stderr
    host_state = letsencrypt / "scaffold" / "hosts" / APP
    assert os.readlink(host_state / "current") == "placeholder"
    placeholder = x509.load_pem_x509_certificate((host_state / "placeholder" / "fullchain.pem").read_bytes())
    names = placeholder.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [APP]

    # certbot's deploy hook for the app's lineage switches only the app's `current`.
    der, key = make_cert(cn=APP, names=(APP,))
    write_pair(letsencrypt / "live" / APP, ssl.DER_cert_to_PEM_cert(der), key)
    generation = (letsencrypt / "scaffold" / "generation").read_text()
    result = helper(letsencrypt, "activate", RENEWED_LINEAGE=str(letsencrypt / "live" / APP))
    assert result.returncode == 0, result.stdout
    assert os.readlink(host_state / "current") == f"../../../live/{APP}"
    assert (host_state / "current" / "fullchain.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert os.readlink(letsencrypt / "scaffold" / "current") == domain_before
    assert (letsencrypt / "scaffold" / "generation").read_text() != generation


# --- DNS-01 (issue 17) -----------------------------------------------------------------------------

DNS_ENV = {"ACME_CHALLENGE": "dns", "DNS_PLUGIN": "rfc2136", "CERT_WILDCARD": "true"}


def test_a_certificate_without_the_wildcard_name_is_requested_again(letsencrypt: Path) -> None:
    write_pair(letsencrypt / "live" / DOMAIN, *good_pair())
    assert helper(letsencrypt, "has-certificate").returncode == 0
    result = helper(letsencrypt, "has-certificate", **DNS_ENV)
    assert result.returncode == 1
    assert f"wanted: *.{DOMAIN}, {DOMAIN}" in result.stdout
    der, key = make_cert(cn=DOMAIN, names=(DOMAIN, f"*.{DOMAIN}"))
    write_pair(letsencrypt / "live" / DOMAIN, ssl.DER_cert_to_PEM_cert(der), key)
    assert helper(letsencrypt, "has-certificate", **DNS_ENV).returncode == 0


def test_a_lineage_from_the_other_challenge_is_replaced_once(letsencrypt: Path) -> None:
    write_pair(letsencrypt / "live" / DOMAIN, *good_pair())
    conf = letsencrypt / "renewal" / f"{DOMAIN}.conf"
    conf.write_text(conf.read_text() + "[renewalparams]\nauthenticator = webroot\n")
    assert helper(letsencrypt, "needs-other-challenge").returncode == 1
    result = helper(letsencrypt, "needs-other-challenge", **DNS_ENV)
    assert result.returncode == 0 and "obtained with webroot, now dns-rfc2136" in result.stdout
    conf.write_text(conf.read_text().replace("webroot", "dns-rfc2136"))
    assert helper(letsencrypt, "needs-other-challenge", **DNS_ENV).returncode == 1


#: (what certbot's log said, words of the cause the helper gives)
DNS_LOGS = [
    (
        "Encountered error adding TXT record: The peer didn't like the signature we sent",
        "refused certbot's TSIG key",
    ),
    ("dns.tsig.PeerBadKey: The peer didn't know the key we used", "refused certbot's TSIG key"),
    (
        "PluginError: Unable to determine base domain for _acme-challenge.sso.example.test",
        "zone of the domain",
    ),
    ("Received response from server: REFUSED", "refused the update"),
    ("dns.exception.Timeout: The DNS operation timed out", "did not answer"),
    (
        "Detail: DNS problem: NXDOMAIN looking up TXT for _acme-challenge.sso.example.test",
        "did not see the TXT",
    ),
    (
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='pebble')",
        "cannot reach the ACME server",
    ),
    ("CloudflareAPIError: Invalid request headers", "refused the API token"),
]


@pytest.mark.parametrize(("line", "cause"), DNS_LOGS)
def test_a_dns_failure_is_named_in_the_log_and_kept_for_doctor(
    tmp_path: Path, letsencrypt: Path, line, cause
):
    log = tmp_path / "letsencrypt.log"
    log.write_text(f"2026-12-07 02:00:00,000:DEBUG:certbot._internal.main:certbot version: 5.1.0\n{line}\n")
    result = helper(letsencrypt, "explain-dns-failure", CERTBOT_LOG=str(log), **DNS_ENV)
    assert result.returncode == 0
    assert "DNS-01 failed: " in result.stdout and cause in result.stdout, result.stdout
    assert "check:" in result.stdout
    recorded = (letsencrypt / "scaffold" / "last-failure").read_text()
    assert cause in recorded
    assert helper(letsencrypt, "clear-failure").returncode == 0
    assert not (letsencrypt / "scaffold" / "last-failure").exists()


def test_an_unknown_dns_failure_quotes_certbot_without_the_secret(tmp_path: Path, letsencrypt: Path) -> None:
    credentials = tmp_path / "credentials.ini"
    credentials.write_text("dns_rfc2136_server = 192.0.2.53\ndns_rfc2136_secret = c2VjcmV0LXZhbHVl\n")
    credentials.chmod(0o600)
    log = tmp_path / "letsencrypt.log"
    log.write_text("certbot.errors.Error: something odd with c2VjcmV0LXZhbHVl in it\n")
    result = helper(
        letsencrypt, "explain-dns-failure", CERTBOT_LOG=str(log), DNS_CREDENTIALS=str(credentials), **DNS_ENV
    )
    assert "something odd with <secret> in it" in result.stdout
    assert "c2VjcmV0LXZhbHVl" not in result.stdout


def test_missing_dns_credentials_say_to_run_scaffold_detect(tmp_path: Path, letsencrypt: Path) -> None:
    result = helper(
        letsencrypt, "check-dns-credentials", DNS_CREDENTIALS=str(tmp_path / "none.ini"), **DNS_ENV
    )
    assert result.returncode == 1 and "run `scaffold detect`" in result.stdout


def test_a_failure_found_before_certbot_ran_is_not_blamed_on_its_old_log(
    tmp_path: Path, letsencrypt: Path
) -> None:
    log = tmp_path / "letsencrypt.log"
    log.write_text("The peer didn't like the signature we sent\n")
    os.utime(log, (1_000_000, 1_000_000))  # an old run
    missing = helper(
        letsencrypt, "check-dns-credentials", DNS_CREDENTIALS=str(tmp_path / "none.ini"), **DNS_ENV
    )
    assert missing.returncode == 1
    explained = helper(letsencrypt, "explain-dns-failure", CERTBOT_LOG=str(log), **DNS_ENV)
    assert explained.stdout == ""
    assert "DNS credentials file" in (letsencrypt / "scaffold" / "last-failure").read_text()
