"""`scaffold doctor` without Docker: the pure judgements, the file checks, the JSON schema, the docs.

The Docker tests (a real stack broken one way at a time) are in tests/e2e/test_doctor_stack.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from scaffold import doctor, envkeys
from scaffold.cli import main as cli_main
from scaffold.dockerapi import DockerContainer
from scaffold.doctor import core as doctor_core
from scaffold.doctor import tls as doctor_tls
from scaffold.doctor.core import Context
from scaffold.doctor.network import (
    _fib_trie_locals,
    _if_inet6_locals,
    classify_dns,
    listener_process,
    probe_port,
    resolve,
)
from scaffold.doctor.proxy.headers import missing_proxy_headers, nginx_config_text
from scaffold.doctor.stack.services import describe_service, judge_websocket
from scaffold.doctor.tls import PLACEHOLDER_SUBJECT, cert_info, evaluate_certificate, name_matches
from scaffold.doctor.trust import excess_ranges, json_entries, looks_like_json, uncovered
from scaffold.doctor.versions import check_template_current, compare_template
from tests.helpers.doctorrun import (
    DOMAIN,
    GOOD_CIDRS,
    NOW,
    SECRETS,
    assert_valid_report,
    env_text,
    make_cert,
    offline_context,
    schema_errors,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "doctor.md"
net = ipaddress.ip_network
addr = ipaddress.ip_address


# --------------------------------------------------------------------------- certificates


def evaluate(der: bytes, *, started: dt.datetime | None = NOW - dt.timedelta(hours=1), **kw: Any):
    return evaluate_certificate(
        cert_info(der), domain=DOMAIN, now=NOW, certbot_started=started, source="the certificate", **kw
    )


def test_both_certificate_parsers_read_the_same() -> None:
    der, _ = make_cert(names=(DOMAIN, "*.example.test"))
    assert cert_info(der) == cert_info(der, prefer_cryptography=False)
    info = cert_info(der, prefer_cryptography=False)
    assert info.names == (DOMAIN, "*.example.test")
    assert info.issuer == "Test Intermediate CA, Test CA Org"
    assert info.not_after == NOW + dt.timedelta(days=80)
    assert not info.self_signed


def test_valid_certificate_is_ok() -> None:
    result = evaluate(make_cert()[0])
    assert {k: v.status for k, v in result.items()} == {"issued": "ok", "names": "ok", "expiry": "ok"}
    assert "80 days left" in result["expiry"].message
    assert "Test Intermediate CA" in result["issued"].message


def test_expiring_soon_warns_and_expired_fails() -> None:
    soon = evaluate(make_cert(not_after=NOW + dt.timedelta(days=5))[0])["expiry"]
    assert soon.status == "warn" and "certbot renews" in (soon.fix or "")
    gone = evaluate(make_cert(not_after=NOW - dt.timedelta(days=2))[0])["expiry"]
    assert gone.status == "fail"
    assert "expired" in gone.message and "docker compose logs certbot" in (gone.fix or "")
    assert "port 80" in (gone.fix or "")
    early = evaluate(make_cert(not_before=NOW + dt.timedelta(days=1))[0])["expiry"]
    assert early.status == "fail" and "clock" in early.message


def test_placeholder_warns_on_the_first_day_then_fails() -> None:
    der, _ = make_cert(cn=PLACEHOLDER_SUBJECT, issuer_cn=None)
    fresh = evaluate(der, started=NOW - dt.timedelta(hours=2))["issued"]
    assert fresh.status == "warn" and "placeholder" in fresh.message
    stale = evaluate(der, started=NOW - dt.timedelta(days=2))["issued"]
    assert stale.status == "fail" and "2 days after certbot started" in stale.message
    fix = stale.fix or ""
    assert "docker compose logs certbot" in fix and "port 80" in fix and "network.dns" in fix
    stopped = evaluate(der, started=None)["issued"]
    assert stopped.status == "fail" and "docker compose up -d certbot" in (stopped.fix or "")
    down = evaluate(der, started=None, stack_running=False)["issued"]
    assert down.status == "warn"
    # The placeholder is made for the domain, so only `issued` complains.
    assert evaluate(der)["names"].status == "ok"


def test_wrong_name_fails_and_wildcards_match_one_label() -> None:
    result = evaluate(make_cert(cn="other.example.org", names=("other.example.org",))[0])
    assert result["names"].status == "fail" and "other.example.org" in result["names"].message
    assert evaluate(make_cert(names=("*.example.test",))[0])["names"].status == "ok"
    assert name_matches("*.example.test", "sso.example.test")
    assert not name_matches("*.example.test", "a.sso.example.test")
    assert not name_matches("*.example.test", "example.test")
    assert name_matches("SSO.Example.Test.", "sso.example.test")


def test_staging_and_self_signed_certificates_warn() -> None:
    staging = evaluate(
        make_cert(issuer_cn="(STAGING) Ersatz Edamame E1", issuer_o="(STAGING) Let's Encrypt")[0]
    )
    assert staging["issued"].status == "warn" and "acme_server=letsencrypt" in (staging["issued"].fix or "")
    own = evaluate(make_cert(issuer_cn=None)[0])
    assert own["issued"].status == "warn" and "self-signed" in own["issued"].message


# --------------------------------------------------------------------------- trusted CIDRs


def test_cidr_breadth() -> None:
    subnet = [net("10.186.13.144/28")]
    assert excess_ranges([net("10.186.13.144/28")], subnet) == []
    assert excess_ranges([net("10.186.13.147/32")], subnet) == []  # narrower is fine
    named = dict(
        excess_ranges(
            [
                net("0.0.0.0/0"),
                net("10.0.0.0/8"),
                net("172.16.0.0/12"),
                net("192.168.0.0/16"),
                net("10.186.13.0/24"),
                net("10.99.0.0/28"),
                net("127.0.0.0/8"),
                net("::/0"),
                net("fc00::/7"),
            ],
            subnet,
        )
    )
    assert named[net("0.0.0.0/0")] == "every address"
    assert named[net("::/0")] == "every address"
    assert "private range 10.0.0.0/8" in named[net("10.0.0.0/8")]
    assert "private range 172.16.0.0/12" in named[net("172.16.0.0/12")]
    assert "private range 192.168.0.0/16" in named[net("192.168.0.0/16")]
    assert "private range fc00::/7" in named[net("fc00::/7")]
    assert (
        named[net("10.186.13.0/24")] == "broader than the proxy network 10.186.13.144/28: 240 more addresses"
    )
    assert named[net("10.99.0.0/28")] == "not the proxy network"
    assert named[net("127.0.0.0/8")] == "not the proxy network"
    # Without known subnets only the broad ranges can be named.
    assert excess_ranges([net("10.99.0.0/28"), net("10.0.0.0/8")], []) == [
        (net("10.0.0.0/8"), "all of the private range 10.0.0.0/8")
    ]
    # A broader IPv4 range is not judged against an IPv6 subnet.
    assert excess_ranges([net("fd00:1::/64")], [net("fd00:1::/64"), net("10.1.0.0/28")]) == []


def test_cidr_coverage() -> None:
    subnets = [net("10.1.2.0/28"), net("fd00:1::/64")]
    assert uncovered(subnets, [net("10.1.2.0/24"), net("fd00:1::/64")]) == []
    assert uncovered(subnets, [net("10.1.2.0/28")]) == [net("fd00:1::/64")]
    assert uncovered(subnets, [net("10.1.2.0/29")]) == subnets  # too narrow covers nothing


def test_json_looking_cidrs() -> None:
    assert looks_like_json('["10.1.2.0/28", "fd00::/64"]')
    assert looks_like_json(' "10.1.2.0/28"')
    assert not looks_like_json("10.1.2.0/28,fd00::/64")
    assert json_entries('["10.1.2.0/28", "fd00::/64"]') == ["10.1.2.0/28", "fd00::/64"]
    assert json_entries("['10.1.2.0/28']") == ["10.1.2.0/28"]  # not JSON, still understood


# --------------------------------------------------------------------------- versions, DNS, ports


def test_compare_template_versions() -> None:
    tags = ["v1.0.0", "v1.2.0", "v1.10.0", "not-a-version"]
    assert compare_template("v1.2.0", tags)[0] == "behind"
    assert compare_template("v1.10.0", tags)[:1] == ("current",)
    assert compare_template("v1.10.0-3-gabc1234", tags)[0] == "ahead"
    assert compare_template("v1.2.0-3-gabc1234", tags)[0] == "behind"
    assert compare_template("2a590f4", tags)[0] == "unknown"
    assert compare_template(None, tags)[0] == "unknown"
    assert compare_template("v1.0.0", [])[0] == "untagged"
    assert compare_template("v1.0.0", tags)[2] == "v1.10.0"


def test_template_current_reads_a_local_templates_tags(tmp_path: Path) -> None:
    repo = tmp_path / "template"
    repo.mkdir()
    (repo / "copier.yml").write_text("project_name: {type: str}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    for tag in ("v1.0.0", "v1.1.0"):
        subprocess.run([*git, "tag", tag], check=True)

    def outcome(commit: str, source: str = str(repo)):
        return check_template_current(offline_context(tmp_path, _src_path=source, _commit=commit))

    behind = outcome("v1.0.0")
    assert behind.status == "warn" and "v1.1.0" in behind.message
    assert "scaffold update" in (behind.fix or "")
    assert outcome("v1.1.0").status == "ok"
    assert outcome("v1.1.0", source=str(tmp_path / "gone")).status == "warn"
    assert outcome("v1.1.0", source="relative/path").status == "warn"
    url = check_template_current(
        offline_context(tmp_path, offline=True, _src_path="https://example.invalid/t.git", _commit="v1")
    )
    assert url.status == "skip" and "--offline" in url.message


def test_dns_judgement() -> None:
    local = {addr("127.0.0.1"), addr("10.0.0.5"), addr("93.184.215.14")}
    nat = {addr("127.0.0.1"), addr("192.168.1.5")}
    missing = classify_dns(DOMAIN, [], "Name or service not known", local)
    assert missing.status == "fail" and "A record" in (missing.fix or "")
    assert classify_dns(DOMAIN, [addr("93.184.215.14")], None, local).status == "ok"
    assert classify_dns(DOMAIN, [addr("127.0.0.1")], None, local).status == "warn"
    assert classify_dns(DOMAIN, [addr("192.168.9.9")], None, local).status == "warn"
    elsewhere = classify_dns(DOMAIN, [addr("151.101.1.1")], None, local)
    assert elsewhere.status == "warn" and "93.184.215.14" in elsewhere.message
    behind_nat = classify_dns(DOMAIN, [addr("151.101.1.1")], None, nat)
    assert behind_nat.status == "ok" and "make sure" in behind_nat.message


def test_resolve_gives_up_quickly_on_an_unknown_name() -> None:
    found, error = resolve("doctor-test.invalid", timeout=3)
    assert found == [] and error


def test_local_address_parsers() -> None:
    trie = """Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 10.186.13.145
        /32 host LOCAL
     |-- 10.186.13.159
        /32 link BROADCAST
Local:
     |-- 127.0.0.1
        /32 host LOCAL
"""
    assert _fib_trie_locals(trie) == {addr("10.186.13.145"), addr("127.0.0.1")}
    inet6 = (
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fd000000000000000000000000000002 04 40 00 82     eth0\n"
    )
    assert _if_inet6_locals(inet6) == {addr("::1"), addr("fd00::2")}


def test_a_port_in_use_is_found_with_its_program() -> None:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert probe_port(port)[0] == "in-use"
        holder = listener_process(port)
        if os.geteuid() == 0 or holder is not None:
            assert holder is not None and f"(pid {os.getpid()})" in holder
    assert probe_port(port)[0] == "free"


# --------------------------------------------------------------------------- services and WebSocket


def container(state: dict[str, Any]) -> DockerContainer:
    """A container as `docker inspect` describes it, with `state` in its State."""
    return DockerContainer.from_api(
        {"Id": "abc", "Name": "/p-worker-1", "State": {"Running": False, **state}}
    )


#: `docker inspect` of a Compose-made nginx container (Docker 20.10), trimmed to the parts doctor reads.
NGINX_INSPECT: dict[str, Any] = {
    "Id": "4f1c0e",
    "Name": "/sso-nginx-1",
    "State": {
        "Status": "running",
        "Running": True,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "ExitCode": 0,
        "StartedAt": "2026-11-27T21:22:24.237887853Z",
        "Health": {
            "Status": "unhealthy",
            "Log": [{"ExitCode": 1, "Output": "old\n"}, {"Output": "refused\n"}],
        },
    },
    "Config": {
        "Env": ["NGINX_VERSION=1.27", "EMPTY=", "WITH_EQUALS=a=b"],
        "Labels": {"com.docker.compose.project": "sso", "com.docker.compose.service": "nginx"},
    },
    "NetworkSettings": {
        "Ports": {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
            "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8443"}],
            "443/udp": [{"HostIp": "0.0.0.0", "HostPort": "9443"}],
            "9000/tcp": None,
        },
        "Networks": {
            "sso_proxy": {"IPAddress": "10.1.2.3", "GlobalIPv6Address": "fd00::3"},
            "sso_default": {"IPAddress": "", "GlobalIPv6Address": ""},
        },
    },
}


def test_container_record_reads_what_docker_inspect_says() -> None:
    nginx = DockerContainer.from_api(NGINX_INSPECT)
    assert (nginx.id, nginx.name, nginx.service, nginx.one_off) == ("4f1c0e", "sso-nginx-1", "nginx", False)
    assert nginx.running and nginx.status == "running" and nginx.exit_code == 0
    assert (nginx.health, nginx.health_output) == ("unhealthy", "refused\n")
    assert dict(nginx.env) == {"NGINX_VERSION": "1.27", "EMPTY": "", "WITH_EQUALS": "a=b"}
    assert nginx.host_ports(80) == [8080] and nginx.host_ports(443) == [8443]
    assert nginx.host_ports(9000) == [] and nginx.host_ports(22) == []
    proxy = nginx.networks["sso_proxy"]
    assert (str(proxy.ipv4), str(proxy.ipv6)) == ("10.1.2.3", "fd00::3")
    assert nginx.networks["sso_default"].ipv4 is None
    started = doctor_core.parse_docker_time(nginx.started_at)
    assert started is not None and started.year == 2026
    bare = DockerContainer.from_api({"Id": "x"})  # a container Docker describes with nothing more
    assert not bare.running and bare.health is None and dict(bare.env) == {} and bare.host_ports(443) == []
    assert (
        describe_service("nginx", nginx).status == "fail"
        and "refused" in describe_service("nginx", nginx).message
    )


def test_service_states() -> None:
    stopped = describe_service("worker", container({"Status": "exited", "ExitCode": 137}))
    assert stopped.status == "fail" and "exit code 137" in stopped.message
    assert "docker compose up -d worker" in (stopped.fix or "")
    assert "docker compose logs" in (stopped.fix or "") and "worker" in (stopped.fix or "")
    assert describe_service("worker", None).status == "fail"
    restarting = describe_service("worker", container({"Running": True, "Restarting": True, "ExitCode": 1}))
    assert restarting.status == "fail" and "restarting" in restarting.message
    unhealthy = container(
        {"Running": True, "Health": {"Status": "unhealthy", "Log": [{"Output": "db down\n"}]}}
    )
    result = describe_service("worker", unhealthy)
    assert result.status == "fail" and "db down" in result.message
    starting = container({"Running": True, "Health": {"Status": "starting"}})
    assert describe_service("worker", starting).status == "warn"
    assert (
        describe_service("worker", container({"Running": True, "Health": {"Status": "healthy"}})).status
        == "ok"
    )
    assert describe_service("certbot", container({"Running": True})).status == "ok"


def test_websocket_answers() -> None:
    url = "wss://sso.example.test/ws/client/"
    assert judge_websocket(101, {}, True, url).status == "ok"
    assert judge_websocket(101, {}, False, url).status == "fail"
    bad_gateway = judge_websocket(502, {}, False, url)
    assert bad_gateway.status == "fail" and "cannot reach authentik" in bad_gateway.message
    no_upgrade = judge_websocket(400, {}, False, url)
    assert no_upgrade.status == "fail" and "proxy_set_header Upgrade" in (no_upgrade.fix or "")
    assert "CSRF" in judge_websocket(403, {}, False, url).message


def test_parse_docker_time() -> None:
    parsed = doctor_core.parse_docker_time("2026-11-27T21:22:24.237887853Z")
    assert parsed == dt.datetime(2026, 11, 27, 21, 22, 24, 237887, tzinfo=dt.UTC)
    assert doctor_core.parse_docker_time("0001-01-01T00:00:00Z") is None
    assert doctor_core.parse_docker_time("2026-11-27T21:22:24Z") == dt.datetime(
        2026, 11, 27, 21, 22, 24, tzinfo=dt.UTC
    )


# --------------------------------------------------------------------------- generated project (no Docker)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project rendered from the working tree without the hook (so without .env)."""
    from tests.helpers.stack import generate

    dest = tmp_path_factory.mktemp("doctor-render") / "proj"
    return generate(
        dest,
        {"project_name": "doctortest", "http_port": 8080, "https_port": 8443},
        skip_tasks=True,
    )


@pytest.fixture
def project(rendered: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(rendered, dest, symlinks=True)
    env = dest / ".env"
    env.write_text(env_text())
    env.chmod(0o600)
    return dest


def run_checks(project: Path, *, offline: bool = True) -> dict[str, doctor_core.Result]:
    """Every check on `project` with Docker unavailable; results by id."""
    ctx = offline_context(project, offline=offline)
    from scaffold.answers import load_answers

    ctx.answers = load_answers(project)
    for check in doctor.all_checks():
        ctx.results[check.id] = doctor._run_one(ctx, check)
    return ctx.results


def test_clean_project_files_are_ok(project: Path) -> None:
    results = run_checks(project)
    for check_id in (
        "files.env-present",
        "files.env-mode",
        "files.env-keys",
        "files.env-secrets",
        "files.env-syntax",
        "files.answers-no-secrets",
        "proxy.headers",
        "proxy.real-ip",
        "trust.cidrs-format",
        "trust.cidrs-cover-network",
        "trust.cidrs-not-broad",
        "versions.tag-matches-answers",
        "versions.authentik-supported",
    ):
        assert results[check_id].status == "ok", results[check_id]
    assert results["files.secrets-untracked"].status == "skip"
    assert results["stack.docker"].status == "fail"
    assert results["stack.service.nginx"].status == "skip"
    assert "from PROXY_SUBNET in .env" in results["trust.cidrs-cover-network"].message


def test_missing_env(project: Path) -> None:
    (project / ".env").unlink()
    results = run_checks(project)
    assert results["files.env-present"].status == "fail"
    assert "scaffold detect" in (results["files.env-present"].fix or "")
    assert results["files.env-mode"].status == "skip"
    assert results["files.compose-config"].status == "skip"


@pytest.mark.parametrize(
    ("overrides", "check_id", "expected"),
    [
        ({envkeys.SECRET_KEY: "short"}, "files.env-secrets", "AUTHENTIK_SECRET_KEY has 5 characters"),
        ({envkeys.PG_PASS: "x" * 120}, "files.env-secrets", "at most 99"),
        ({envkeys.TAG: "2026.5.1"}, "versions.tag-matches-answers", "authentik_version 2026.8.7"),
        ({envkeys.TAG: "2025.10.3"}, "versions.authentik-supported", "older than this template supports"),
        ({envkeys.TAG: "latest"}, "versions.authentik-supported", "not a YEAR.MONTH.PATCH release"),
        ({envkeys.TRUSTED_CIDRS: "10.203.7.0/28,bogus"}, "trust.cidrs-format", "skips bogus"),
        ({envkeys.TRUSTED_CIDRS: "10.0.0.0/8"}, "trust.cidrs-not-broad", "10.0.0.0/8 (all of the private"),
        ({envkeys.TRUSTED_CIDRS: "10.203.7.0/28"}, "trust.cidrs-not-broad", "gateway 10.203.7.1, which is"),
        ({envkeys.PROXY_SUBNET: None}, "files.env-keys", "lacks PROXY_SUBNET"),
    ],
)
def test_env_problems_are_named(
    project: Path, overrides: dict[str, str | None], check_id: str, expected: str
) -> None:
    (project / ".env").write_text(env_text(**overrides))
    result = run_checks(project)[check_id]
    assert result.status in ("warn", "fail"), result
    assert expected in result.message, result.message
    assert result.fix


def test_an_ambiguous_env_line_warns(project: Path) -> None:
    (project / ".env").write_text(env_text() + "export AUTHENTIK_LOG_LEVEL=debug\n")
    result = run_checks(project)["files.env-syntax"]
    assert result.status == "warn" and "line 6" in result.message and "export" in result.message


def test_env_lines_python_dotenv_and_compose_read_differently_fail(project: Path) -> None:
    (project / ".env").write_text("BACKUP_DIR='C:\\'\n" + env_text() + "LOG: debug\n")
    result = run_checks(project)["files.env-syntax"]
    assert result.status == "fail" and "line 1" in result.message and "line 7" in result.message
    assert "Docker Compose" in result.message and "scaffold detect" in (result.fix or "")


def test_json_cidrs_fail_with_the_exact_line_to_write(project: Path) -> None:
    (project / ".env").write_text(env_text(**{envkeys.TRUSTED_CIDRS: '["10.203.7.0/28"]  # pinned'}))
    results = run_checks(project)
    fmt = results["trust.cidrs-format"]
    assert fmt.status == "fail" and "JSON" in fmt.message
    assert f"`AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={GOOD_CIDRS}`" in (fmt.fix or "")
    assert results["trust.cidrs-cover-network"].status == "skip"


def test_proxy_headers(rendered: Path) -> None:
    text = nginx_config_text(rendered)
    on_port = "https://sso.example.test:8443"
    assert missing_proxy_headers(text, on_port) == []
    without_upgrade = re.sub(r"proxy_set_header Upgrade[^;]*;", "", text)
    assert [what for what, _ in missing_proxy_headers(without_upgrade, on_port)] == [
        "proxy_set_header Upgrade $http_upgrade"
    ]
    appended = text.replace("X-Forwarded-For $remote_addr", "X-Forwarded-For $proxy_add_x_forwarded_for")
    assert any("$remote_addr" in what for what, _ in missing_proxy_headers(appended, on_port))
    # Passing on the client's own header is as bad: authentik trusts whatever nginx sends.
    passed_on = text.replace("X-Forwarded-For $remote_addr", "X-Forwarded-For $http_x_forwarded_for")
    ((what, why),) = missing_proxy_headers(passed_on, on_port)
    assert what == "proxy_set_header X-Forwarded-For $remote_addr"
    assert "$http_x_forwarded_for" in why and "clients choose it" in why


def test_proxy_headers_want_the_host_the_browser_sent(rendered: Path) -> None:
    """Issue 12: `$host` drops a public port; `$host:PORT` (the last release) breaks a router's forward."""
    text = nginx_config_text(rendered)
    assert missing_proxy_headers(text, "https://sso.example.test") == []

    def with_host(value: str) -> str:
        return re.sub(r"proxy_set_header Host [^;]*;", f"proxy_set_header Host {value};", text)

    ((what, why),) = missing_proxy_headers(with_host("$host"), "https://sso.example.test:8443")
    assert what == "proxy_set_header Host $scaffold_site_host" and "drops the port" in why
    assert missing_proxy_headers(with_host("$host"), "https://sso.example.test") == []
    for public_url in ("https://sso.example.test", "https://sso.example.test:8443"):
        ((what, why),) = missing_proxy_headers(with_host("$host:8443"), public_url)
        assert what == "proxy_set_header Host $scaffold_site_host" and "replaced by $host:8443" in why, why
    assert [
        w for w, _ in missing_proxy_headers(with_host("sso.example.test"), "https://sso.example.test")
    ] == ["proxy_set_header Host $scaffold_site_host"]
    # Unchecked, but the Host as sent: not a CSRF problem.
    assert missing_proxy_headers(with_host("$http_host"), "https://sso.example.test:8443") == []
    # A project from the last release has no map of its hosts: doctor recommends authentik's own line.
    last_release = with_host("$host:8443").replace("map $http_host $scaffold_site_host", "map $x $y")
    ((what, _),) = missing_proxy_headers(last_release, "https://sso.example.test:8443")
    assert what == "proxy_set_header Host $http_host"


def test_secrets_in_tracked_files_and_answers_fail_without_showing_them(project: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(project)]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    assert run_checks(project)["files.secrets-untracked"].status == "ok"

    (project / "notes.txt").write_text(f"db password: {SECRETS[envkeys.PG_PASS]}\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    answers = project / ".copier-answers.yml"
    answers.write_text(answers.read_text() + f"leaked: {SECRETS[envkeys.SECRET_KEY]}\n")
    results = run_checks(project)
    tracked = results["files.secrets-untracked"]
    assert tracked.status == "fail" and "PG_PASS in notes.txt" in tracked.message
    assert "AUTHENTIK_SECRET_KEY" in tracked.message  # the answers file is tracked too
    assert results["files.answers-no-secrets"].status == "fail"

    code, text = doctor_cli(project, "--offline")
    code_json, text_json = doctor_cli(project, "--offline", "--json")
    for output in (text, text_json, str(results)):
        for secret in SECRETS.values():
            assert secret not in output
    assert code == code_json == 1

    (project / ".gitignore").write_text("")
    subprocess.run([*git, "rm", "-q", "--cached", "notes.txt"], check=True)
    subprocess.run([*git, "checkout", "-q", "--", ".copier-answers.yml"], check=True)
    assert run_checks(project)["files.secrets-untracked"].status == "warn"  # .env is no longer ignored


def git_in(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(project), *args], check=True
    )


@pytest.mark.parametrize("how", ["reverted", "amended away"])
def test_a_secret_committed_then_removed_is_found_in_history_without_showing_it(
    project: Path, how: str
) -> None:
    git_in(project, "init", "-q")
    git_in(project, "add", "-A")
    git_in(project, "commit", "-qm", "init")
    (project / "notes.txt").write_text(f"db: postgres://authentik:{SECRETS[envkeys.PG_PASS]}@db/authentik\n")
    git_in(project, "add", "notes.txt")
    git_in(project, "commit", "-qm", "notes")
    leaked = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if how == "reverted":
        git_in(project, "rm", "-q", "notes.txt")
        git_in(project, "commit", "-qm", "remove notes")
    else:  # only the reflog still holds the commit
        git_in(project, "rm", "-q", "notes.txt")
        git_in(project, "commit", "-q", "--amend", "--allow-empty", "-m", "notes removed")
    assert not (project / "notes.txt").exists()
    result = run_checks(project)["files.secrets-untracked"]
    assert result.status == "fail", result
    assert "PG_PASS in notes.txt" in result.message and leaked in result.message
    assert "git filter-repo" in (result.fix or "") and "rotate" in (result.fix or "")
    code, text = doctor_cli(project, "--offline", "--json")
    assert code == 1
    for secret in SECRETS.values():
        assert secret not in text and secret not in result.message


def test_history_search_reads_a_thousand_commits_quickly_and_says_when_it_stops_early(tmp_path: Path) -> None:
    from scaffold.githistory import scan_history

    repo = tmp_path / "many"
    git_in(tmp_path, "init", "-q", str(repo))
    secret = "s3cr3t-" + "x" * 40
    stream = []
    for n in range(1000):  # one commit per revision of config.txt; the secret only in the first
        body = f"version {n}\n" + (f"password={secret}\n" if n == 0 else "") + "padding\n" * 50
        data = body.encode()
        parent = "" if n == 0 else f"from :{n}\n"
        stream.append(
            f"commit refs/heads/main\nmark :{n + 1}\ncommitter t <t@t> {1700000000 + n} +0000\n"
            f"data 2\nc\n{parent}M 644 inline config.txt\ndata {len(data)}\n"
        )
        stream.append(body + "\n")
    subprocess.run(
        ["git", "-C", str(repo), "fast-import", "--quiet"], input="".join(stream).encode(), check=True
    )
    started = time.monotonic()
    scan = scan_history(repo, {secret.encode(): "PG_PASS"})
    assert time.monotonic() - started < 10
    assert scan.complete and scan.blobs == 1000
    assert [(f.key, f.path) for f in scan.findings] == [("PG_PASS", "config.txt")]
    partial = scan_history(repo, {secret.encode(): "PG_PASS"}, byte_budget=20_000)
    assert not partial.complete and partial.blobs < 1000


def test_a_crashing_check_is_a_warning_and_never_leaks_a_secret(project: Path, monkeypatch) -> None:
    def boom(ctx: Context) -> doctor_core.Outcome:
        raise RuntimeError(f"oops {SECRETS[envkeys.PG_PASS]}")

    monkeypatch.setattr(doctor, "all_checks", lambda: (doctor_core.Check("files.env-present", boom),))
    report = doctor.run_doctor(project, offline=True)
    (result,) = report.results
    assert result.status == "warn" and "oops <redacted>" in result.message
    assert report.exit_code == 0


# --------------------------------------------------------------------------- CLI, JSON schema, docs


def doctor_cli(project: Path, *args: str) -> tuple[int, str]:
    """`scaffold doctor PROJECT ARGS` through the real CLI; (exit code, stdout + stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["doctor", str(project), *args])
    return code, out.getvalue() + err.getvalue()


def test_the_validator_rejects_what_the_schema_forbids() -> None:
    good = {
        "schema": "scaffold-doctor/1",
        "project": "/p",
        "offline": True,
        "summary": {"ok": 1, "warn": 0, "fail": 0, "skip": 0},
        "exit_code": 0,
        "error": None,
        "checks": [{"id": "files.env-mode", "group": "files", "status": "ok", "message": "m", "fix": None}],
    }
    assert schema_errors(good, doctor.JSON_SCHEMA) == []
    for broken in (
        {**good, "schema": "scaffold-doctor/2"},
        {**good, "exit_code": 3},
        {**good, "extra": 1},
        {**good, "error": {"message": "m"}},
        {**good, "checks": [{**good["checks"][0], "status": "bad"}]},
        {**good, "checks": [{**good["checks"][0], "fix": 3}]},
        {**good, "summary": {"ok": 1, "warn": 0, "fail": 0}},
    ):
        assert schema_errors(broken, doctor.JSON_SCHEMA), broken


def test_json_output_follows_the_documented_schema(project: Path) -> None:
    code, text = doctor_cli(project, "--json", "--offline")
    document = json.loads(text)
    assert_valid_report(document)
    assert document["offline"] is True and document["project"] == str(project.resolve())
    assert code == document["exit_code"]


def test_not_a_project_cannot_run(tmp_path: Path) -> None:
    code, text = doctor_cli(tmp_path)
    assert code == 2 and "not generated by this template" in text
    code, text = doctor_cli(tmp_path, "--json")
    document = json.loads(text)
    assert code == 2 and document["exit_code"] == 2 and document["checks"] == []
    assert "scaffold new" in document["error"]["fix"]
    assert_valid_report(document)
    assert doctor_cli(tmp_path / "missing")[0] == 2


def test_text_output_has_one_line_per_check_and_fixes(project: Path) -> None:
    (project / ".env").chmod(0o644)
    code, text = doctor_cli(project, "--offline")
    assert code == 1
    lines = text.splitlines()
    for check_id in doctor.check_ids():
        assert (
            sum(1 for line in lines if re.match(rf"^(ok|warn|fail|skip)\s+{re.escape(check_id)} ", line)) == 1
        )
    index = next(i for i, line in enumerate(lines) if line.startswith("fail  files.env-mode"))
    assert lines[index + 1].strip() == "fix: chmod 600 .env"
    assert re.search(r"\d+ ok, \d+ warn, \d+ fail, \d+ skip", lines[-1])
    assert "\x1b[" not in text  # no colour when not on a terminal


def test_check_ids_are_unique_and_documented() -> None:
    ids = doctor.check_ids()
    assert len(ids) == len(set(ids))
    docs = DOCS.read_text()
    documented = set(re.findall(r"^\| `([a-z]+\.[a-z0-9.-]+)` \|", docs, re.M))
    assert documented == set(ids)
    blocks = re.findall(r"```json\n(.*?)```", docs, re.S)
    assert json.loads(blocks[1]) == doctor.JSON_SCHEMA


# --------------------------------------------------------------------------- the pair `current` points at


def point_current_at_pair(project: Path, chain: str | bytes, key: str | bytes) -> None:
    """letsencrypt/ as certbot leaves it: `current` -> ../live/DOMAIN holding `chain` and `key`."""
    live = project / "letsencrypt" / "live" / DOMAIN
    live.mkdir(parents=True, exist_ok=True)
    (live / "fullchain.pem").write_bytes(chain.encode() if isinstance(chain, str) else chain)
    (live / "privkey.pem").write_bytes(key.encode() if isinstance(key, str) else key)
    (project / "letsencrypt" / "scaffold").mkdir(parents=True, exist_ok=True)
    (project / "letsencrypt" / "scaffold" / "current").symlink_to(f"../live/{DOMAIN}")


def loadable(project: Path) -> doctor_core.Outcome:
    ctx = offline_context(project)
    doctor_tls.observe.seed(ctx, doctor_tls.Observed(serve_error="nothing answers in this test"))
    return doctor_tls.check_loadable(ctx)


@pytest.mark.parametrize(
    ("pair", "reason"),
    [
        (("garbage\n", "garbage\n"), "OpenSSL cannot read the pair"),
        ("key-of-another-certificate", "privkey.pem is not the key of the first certificate"),
    ],
)
def test_doctor_says_why_nginx_cannot_load_the_current_certificate(project: Path, pair, reason: str) -> None:
    if pair == "key-of-another-certificate":
        der, _ = make_cert()
        _, other_key = make_cert()
        pair = (ssl.DER_cert_to_PEM_cert(der), other_key)
    point_current_at_pair(project, *pair)
    outcome = loadable(project)
    assert outcome.status == "fail", outcome
    assert f"points at ../live/{DOMAIN}, which nginx cannot load: {reason}" in outcome.message
    assert "placeholder" in outcome.message and "docker compose restart certbot" in (outcome.fix or "")


def test_doctor_accepts_a_current_certificate_nginx_can_load(project: Path) -> None:
    der, key = make_cert()
    point_current_at_pair(project, ssl.DER_cert_to_PEM_cert(der), key)
    assert loadable(project).status == "ok"
    (project / "letsencrypt" / "live" / DOMAIN / "privkey.pem").unlink()
    assert loadable(project).status == "skip"


def test_a_symlinked_env_fails_with_the_fix(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.env"
    (project / ".env").rename(target)
    (project / ".env").symlink_to(target)
    result = run_checks(project)["files.env-present"]
    assert result.status == "fail" and "symbolic link" in result.message
    assert "cp --remove-destination" in (result.fix or "")
