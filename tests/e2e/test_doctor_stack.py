"""`scaffold doctor` on a real generated stack on the real Docker daemon, broken one way at a time.

One stack is brought up for the module (stand-in images, pebble as the ACME CA, random host ports).
Each test applies one breakage, asserts that doctor names exactly that problem (the set of failing
check ids), with its fix and the exit code, and restores files and state afterwards. A second project
that is never started serves the checks that need no running stack (a taken port, a stack that is down).

The test domain `sso.example.test` never resolves, so online runs always fail `network.dns` (see
docs/doctor.md): the healthy-stack test runs `--offline`, and the online tests expect that failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaffold.cli import main as cli_main
from scaffold.doctor.probes import fetch_served_certificate
from scaffold.doctor.tls import PLACEHOLDER_SUBJECT, cert_info
from scaffold.subnets import trusted_cidrs, trusted_ranges
from tests.helpers.doctorrun import Doctor, make_cert, secrets_of
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, Stack, running_stack

pytestmark = pytest.mark.docker

SERVICES = ("postgresql", "server", "worker", "nginx", "certbot")
CURRENT = Path("letsencrypt/scaffold/current")


def served(stack: Stack) -> Any:
    return cert_info(fetch_served_certificate(stack.https_port, DOMAIN))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """A running, healthy stack that serves a certificate issued by pebble."""
    with running_stack(tmp_path_factory.mktemp("doctor-live"), standin_images) as stack:
        stack.up()
        stack.wait_healthy(SERVICES)
        wait_for(
            lambda: (
                os.readlink(stack.dir / CURRENT).startswith("../live/")
                and served(stack).subject_cn != PLACEHOLDER_SUBJECT
            ),
            "the certificate from pebble",
            timeout=120,
            context=lambda: stack.compose("logs", "--tail", "30").stdout,
        )
        yield stack


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """A generated project that is never started."""
    with running_stack(tmp_path_factory.mktemp("doctor-idle"), standin_images) as stack:
        yield stack


def doctor(stack: Stack, *args: str) -> Doctor:
    return Doctor(stack.dir, *args, secrets=secrets_of(stack))


@contextlib.contextmanager
def edited_env(stack: Stack, edit) -> Iterator[None]:
    """Apply `edit(text) -> text` to .env; restore its bytes and mode afterwards."""
    path = stack.dir / ".env"
    data, mode = path.read_bytes(), path.stat().st_mode & 0o777
    try:
        path.write_text(edit(data.decode()))
        yield
    finally:
        path.write_bytes(data)
        path.chmod(mode)


def set_line(key: str, value: str):
    def edit(text: str) -> str:
        new, count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", text)
        assert count == 1
        return new

    return edit


@contextlib.contextmanager
def serving(stack: Stack, target: str) -> Iterator[None]:
    """Point letsencrypt/scaffold/current at `target`, reload nginx; put everything back afterwards."""
    link = stack.dir / CURRENT
    before = os.readlink(link)

    def point(to: str) -> None:
        tmp = link.with_name(".current.test")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(to)
        tmp.replace(link)
        stack.exec("nginx", "nginx", "-s", "reload")

    def state() -> str:
        """What a timeout needs to be explained: what nginx serves, where `current` points, the logs."""
        try:
            shown = served(stack)
            serving_now = f"{shown.subject_cn} (issuer {shown.issuer}, sha256 {shown.fingerprint[:16]}...)"
        except Exception as error:
            serving_now = repr(error)
        logs = stack.compose("logs", "--tail", "30", "nginx", "certbot").stdout
        return f"nginx serves {serving_now}; current -> {os.readlink(link)}\n{logs}"

    def fingerprint_of(pointed_at: str) -> str:
        chain = stack.dir / "letsencrypt/scaffold" / pointed_at / "fullchain.pem"
        return cert_info(_der_of(chain)).fingerprint

    expected = fingerprint_of(target)
    point(target)
    try:
        wait_for(
            lambda: served(stack).fingerprint == expected,
            f"nginx to serve {target}",
            timeout=20,
            context=state,
        )
        yield
    finally:
        point(before)
        # What `before` holds now: certbot may have renewed it meanwhile.
        wait_for(
            lambda: served(stack).fingerprint == fingerprint_of(before),
            "nginx to serve the real certificate",
            timeout=20,
            context=state,
        )


def _der_of(path: Path) -> bytes:
    from scaffold.doctor.tls import read_pem_certificate

    return read_pem_certificate(path)


# --------------------------------------------------------------------------- healthy


def test_healthy_stack_exits_0(live: Stack) -> None:
    result = doctor(live, "--offline")
    assert result.code == 0, result
    assert result.with_status("fail") == set(), result
    assert result.with_status("warn") == set(), result
    for check_id in (
        "trust.cidrs-cover-network",
        "trust.subnet-matches-env",
        "trust.nginx-address",
        "stack.nginx-config",
        "stack.websocket",
        "stack.env-applied",
        *(f"stack.service.{s}" for s in SERVICES),
    ):
        assert result.status(check_id) == "ok", result
    assert all(result.status(i) == "skip" for i in result.checks if i.startswith(("network.", "tls.")))
    assert result.seconds < 10, f"doctor took {result.seconds:.1f} s"
    print(f"\ndoctor --offline on a healthy stack: {result.seconds:.2f} s")


def test_online_checks_on_the_healthy_stack(live: Stack) -> None:
    result = doctor(live)
    assert result.code == 1
    assert result.with_status("fail") == {"network.dns"}, result
    dns = result.checks["network.dns"]
    assert "does not resolve" in dns["message"] and "A record" in dns["fix"]
    for check_id in ("network.port-http", "network.port-https"):
        assert result.status(check_id) == "ok" and "this stack's nginx" in result.checks[check_id]["message"]
    for check_id in ("tls.certificate-issued", "tls.certificate-names", "tls.certificate-expiry"):
        assert result.status(check_id) == "ok", result
    assert "Pebble" in result.checks["tls.certificate-issued"]["message"]
    assert result.status("tls.certificate-loaded") == "ok"
    assert result.seconds < 10
    print(f"\ndoctor (online) on a healthy stack: {result.seconds:.2f} s")


def test_text_output_never_shows_a_secret(live: Stack) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["doctor", str(live.dir)])
    text = out.getvalue()
    assert code == 1 and "fail  network.dns" in text
    for secret in secrets_of(live):
        assert secret not in text


# --------------------------------------------------------------------------- .env breakages


def good_cidrs(live: Stack) -> str:
    """The value scaffold writes: the proxy subnet without its gateway (Docker's default, first host)."""
    return trusted_cidrs(trusted_ranges([ipaddress.ip_network(live.env()["PROXY_SUBNET"])]))


def test_wrong_pinned_cidr(live: Stack) -> None:
    subnet = live.env()["PROXY_SUBNET"]
    with edited_env(live, set_line("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS", "10.99.99.0/28  # pinned")):
        result = doctor(live, "--offline")
    assert result.code == 1
    assert result.with_status("fail") == {"trust.cidrs-cover-network"}, result
    cover = result.checks["trust.cidrs-cover-network"]
    assert subnet in cover["message"] and "Docker's network" in cover["message"]
    assert f"AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={good_cidrs(live)}  # pinned" in cover["fix"]
    assert "docker compose up -d" in cover["fix"]
    broad = result.checks["trust.cidrs-not-broad"]
    assert broad["status"] == "warn" and "10.99.99.0/28 (not the proxy network)" in broad["message"]
    # The running server still has the right value: nginx is trusted until the next `up`.
    assert result.status("trust.nginx-address") == "ok"
    assert result.status("stack.env-applied") == "warn"


def test_json_cidr_list(live: Stack) -> None:
    subnet = live.env()["PROXY_SUBNET"]
    value = f'["{subnet}"]  # pinned'
    with edited_env(live, set_line("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS", value)):
        result = doctor(live, "--offline")
    assert result.code == 1
    assert result.with_status("fail") == {"trust.cidrs-format"}, result
    check = result.checks["trust.cidrs-format"]
    assert "JSON" in check["message"] and "trusts no proxy" in check["message"]
    assert f"`AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={good_cidrs(live)}`" in check["fix"]
    assert result.status("trust.cidrs-cover-network") == "skip"


def test_pinned_cidr_that_trusts_the_gateway_is_a_warning(live: Stack) -> None:
    """The whole subnet (what scaffold wrote before) trusts the Docker host; pinned, it is only named."""
    subnet = ipaddress.ip_network(live.env()["PROXY_SUBNET"])
    with edited_env(live, set_line("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS", f"{subnet}  # pinned")):
        result = doctor(live, "--offline")
    assert result.code == 0, result
    assert result.with_status("warn") >= {"trust.cidrs-not-broad"}, result
    assert result.with_status("fail") == set(), result
    check = result.checks["trust.cidrs-not-broad"]
    assert f"gateway {subnet.network_address + 1}, which is the Docker host" in check["message"]
    assert f"AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={good_cidrs(live)}  # pinned" in check["fix"]
    assert result.status("trust.cidrs-cover-network") == "ok"


def test_env_readable_by_others(live: Stack) -> None:
    with edited_env(live, lambda text: text):
        (live.dir / ".env").chmod(0o644)
        result = doctor(live, "--offline")
    assert result.code == 1
    assert result.with_status("fail") == {"files.env-mode"}, result
    assert result.checks["files.env-mode"]["fix"] == "chmod 600 .env"
    assert "0644" in result.checks["files.env-mode"]["message"]


def test_missing_key(live: Stack) -> None:
    drop = lambda text: re.sub(r"(?m)^AUTHENTIK_SECRET_KEY=.*\n", "", text)  # noqa: E731
    with edited_env(live, drop):
        result = doctor(live, "--offline")
    assert result.code == 1
    assert result.with_status("fail") == {"files.env-keys"}, result
    check = result.checks["files.env-keys"]
    assert "AUTHENTIK_SECRET_KEY" in check["message"] and "scaffold detect" in check["fix"]
    assert result.status("files.compose-config") == "skip"


def test_network_subnet_disagrees_with_env(live: Stack) -> None:
    actual = live.env()["PROXY_SUBNET"]
    with edited_env(live, set_line("PROXY_SUBNET", "10.99.77.0/28")):
        result = doctor(live, "--offline")
    assert result.code == 1
    assert result.with_status("fail") == {"trust.subnet-matches-env"}, result
    check = result.checks["trust.subnet-matches-env"]
    assert "10.99.77.0/28" in check["message"] and actual in check["message"]
    assert "scaffold detect" in check["fix"] and "docker compose down && docker compose up -d" in check["fix"]


# --------------------------------------------------------------------------- certificates


def test_expired_certificate(live: Stack) -> None:
    der, key = make_cert(
        cn=DOMAIN,
        names=(DOMAIN,),
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=100),
        not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
        issuer_cn=None,
    )
    import ssl

    folder = live.dir / "letsencrypt/scaffold/expired-test"
    folder.mkdir()
    (folder / "fullchain.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    (folder / "privkey.pem").write_bytes(key)
    try:
        with serving(live, "expired-test"):
            result = doctor(live)
    finally:
        for name in ("fullchain.pem", "privkey.pem"):
            (folder / name).unlink()
        folder.rmdir()
    assert result.code == 1
    assert result.with_status("fail") == {"network.dns", "tls.certificate-expiry"}, result
    check = result.checks["tls.certificate-expiry"]
    assert "expired on" in check["message"]
    assert "docker compose logs certbot" in check["fix"] and "port 80" in check["fix"]
    assert result.status("tls.certificate-names") == "ok"
    # nginx serves what `current` points at, so the reload check agrees.
    assert result.status("tls.certificate-loaded") == "ok"


def test_placeholder_still_served(live: Stack) -> None:
    with serving(live, "placeholder"):
        result = doctor(live)
    assert result.code == 1
    assert result.with_status("fail") == {"network.dns"}, result
    check = result.checks["tls.certificate-issued"]
    # certbot started minutes ago: a warning; a day later it fails (test_doctor.py covers that).
    assert check["status"] == "warn" and "placeholder" in check["message"]
    assert "docker compose logs certbot" in check["fix"] and "port 80" in check["fix"]


# --------------------------------------------------------------------------- services


def test_stopped_service(live: Stack) -> None:
    live.compose("stop", "certbot")
    try:
        result = doctor(live, "--offline")
    finally:
        live.compose("start", "certbot")
    assert result.code == 1
    assert result.with_status("fail") == {"stack.service.certbot"}, result
    check = result.checks["stack.service.certbot"]
    assert "not running: exited" in check["message"]
    assert "docker compose up -d certbot" in check["fix"] and "docker compose logs" in check["fix"]
    live.wait_healthy(("certbot",), timeout=60)


# --------------------------------------------------------------------------- a stack that is not running


def test_stack_that_is_down_skips_running_checks(idle: Stack) -> None:
    result = doctor(idle, "--offline")
    assert result.code == 0, result
    assert result.status("stack.docker") == "ok"
    for check_id in ("stack.websocket", "stack.nginx-config", "trust.nginx-address", "stack.service.nginx"):
        assert result.status(check_id) == "skip"
        assert "is running" in result.checks[check_id]["message"]
    assert "docker compose up -d" in result.checks["stack.service.nginx"]["fix"]
    assert result.status("trust.cidrs-cover-network") == "ok"
    assert "the network does not exist yet" in result.checks["trust.cidrs-cover-network"]["message"]


def test_port_already_taken(idle: Stack) -> None:
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("0.0.0.0", idle.http_port))
        blocker.listen()
        result = doctor(idle)
    assert result.code == 1
    assert result.with_status("fail") == {"network.dns", "network.port-http"}, result
    check = result.checks["network.port-http"]
    assert str(idle.http_port) in check["message"] and "in use" in check["message"]
    if os.geteuid() == 0:
        assert f"(pid {os.getpid()})" in check["message"]
    assert f"ss -ltnp 'sport = :{idle.http_port}'" in check["fix"]
    assert result.status("network.port-https") == "ok"
    assert result.status("tls.certificate-issued") == "skip"
