"""`scaffold doctor` and proxies in front of nginx, without Docker: proxy.real-ip on hand-written and
rendered projects, and stack.client-address's log parsing, judgement and request/log round trip (with
a fake Docker client). The live runs against real stacks are in the e2e tests.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from scaffold.dockerapi import DockerContainer
from scaffold.doctor.core import Context
from scaffold.doctor.proxy.realip import (
    CLOUDFLARE_CONF,
    REAL_IP_CONF,
    check_real_ip,
)
from scaffold.doctor.stack import clientaddr as doctor_clientaddr
from scaffold.doctor.stack.clientaddr import (
    FORGED,
    MARK,
    check_client_address,
    forged_headers,
    judge_client_address,
    logged_address,
    parse_address,
)
from scaffold.doctor.upstream import directives, parse_upstream_proxies
from tests.helpers.doctorrun import DOMAIN, offline_context

REPO = Path(__file__).resolve().parents[1]
net = ipaddress.ip_network

SITE = """\
server {
    listen 80;
    server_name sso.example.test;
    include /etc/nginx/snippets/real-ip.conf;
}
server {
    listen 443 ssl;
    server_name sso.example.test;
    include /etc/nginx/snippets/real-ip.conf;
    location ^~ /auth/ {
        proxy_pass https://authentik;
        include /etc/nginx/snippets/proxy-authentik.conf;
    }
    include /etc/nginx/custom/authentik.d/*.conf;
}
"""
PROXY_SNIPPET = "proxy_http_version 1.1;\nproxy_set_header X-Forwarded-For $remote_addr;\n"
NO_PROXIES = "# No proxy in front of nginx.\n# set_real_ip_from 10.0.0.0/8;  (an example, commented out)\n"
CLOUDFLARE_RANGES = "# Cloudflare\nset_real_ip_from 173.245.48.0/20;\nset_real_ip_from 2400:cb00::/32;\n"


def real_ip(
    *ranges: str, header: str | None = "X-Forwarded-For", recursive: bool = True, extra: str = ""
) -> str:
    lines = [f"set_real_ip_from {item};" for item in ranges]
    if extra:
        lines.append(extra)
    if header:
        lines.append(f"real_ip_header {header};")
    if recursive:
        lines.append("real_ip_recursive on;")
    return "# Who may tell nginx the client's address.\n" + "\n".join(lines) + "\n"


def write_project(
    root: Path,
    real_ip_text: str | None = NO_PROXIES,
    *,
    cloudflare: str | None = CLOUDFLARE_RANGES,
    site: str = SITE,
    files: dict[str, str] | None = None,
) -> Path:
    """A project's nginx folder, by hand: the site, the snippets, and any `files` (path -> text)."""
    contents = {
        "nginx/conf.d/authentik.conf": site,
        "nginx/snippets/proxy-authentik.conf": PROXY_SNIPPET,
        REAL_IP_CONF: real_ip_text,
        CLOUDFLARE_CONF: cloudflare,
        **(files or {}),
    }
    for name, text in contents.items():
        if text is None:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def real_ip_result(root: Path, **answers: Any):
    return check_real_ip(offline_context(root, **answers))


# --------------------------------------------------------------------------- the answer and the files


def test_upstream_proxies_answer_is_read_as_the_template_reads_it() -> None:
    answer = parse_upstream_proxies(" 192.0.2.10,2001:DB8::/48\n Cloudflare ,, 10.1.2.3/24 192.0.2.10 ")
    assert answer.ranges == (net("192.0.2.10/32"), net("2001:db8::/48"), net("10.1.2.0/24"))
    assert answer.cloudflare and answer.header == "CF-Connecting-IP"
    assert answer.unreadable == ()
    assert parse_upstream_proxies("").empty and parse_upstream_proxies(None).empty
    assert parse_upstream_proxies("10.0.0.1").header == "X-Forwarded-For"
    junk = parse_upstream_proxies("lb.example.net, 10.0.0.300, 10.0.0.1")
    assert junk.unreadable == ("lb.example.net", "10.0.0.300") and junk.ranges == (net("10.0.0.1/32"),)


def test_directives_skip_comments_and_know_their_block_depth() -> None:
    text = (
        "# set_real_ip_from 0.0.0.0/0;\nset_real_ip_from 10.0.0.1;  # the LB\n"
        'server {\n  real_ip_header "X-Forwarded-For";\n  location / { real_ip_recursive on; }\n}\n'
        "include snippets/x.conf;\n"
    )
    assert directives(text) == [
        ("set_real_ip_from", "10.0.0.1", 0),
        ("real_ip_header", "X-Forwarded-For", 1),
        ("real_ip_recursive", "on", 2),
        ("include", "snippets/x.conf", 0),
    ]


# --------------------------------------------------------------------------- proxy.real-ip: ok


def test_no_proxies_and_only_comments_is_ok(tmp_path: Path) -> None:
    result = real_ip_result(write_project(tmp_path), upstream_proxies="")
    assert result.status == "ok", result
    assert result.message == "no proxy in front of nginx: nginx uses the TCP peer as the client address"


def test_listed_proxies_are_ok_and_named(tmp_path: Path) -> None:
    root = write_project(tmp_path, real_ip("192.0.2.10", "2001:db8::/48"))
    result = real_ip_result(root, upstream_proxies="192.0.2.10, 2001:db8::/48")
    assert result.status == "ok", result
    assert result.message == (
        "nginx takes the client address from X-Forwarded-For only from 2 ranges: 192.0.2.10/32, 2001:db8::/48"
    )


def test_cloudflare_and_an_address_are_ok(tmp_path: Path) -> None:
    text = real_ip(
        "10.1.2.3", header="CF-Connecting-IP", extra="include /etc/nginx/snippets/cloudflare-ranges.conf;"
    )
    result = real_ip_result(write_project(tmp_path, text), upstream_proxies="cloudflare, 10.1.2.3")
    assert result.status == "ok", result
    assert "from CF-Connecting-IP only from Cloudflare's 2 ranges and 10.1.2.3/32" in result.message


def test_another_site_may_trust_its_own_proxies_inside_its_server_block(tmp_path: Path) -> None:
    other = "server {\n  server_name other.example.test;\n  set_real_ip_from 10.0.0.0/8;\n}\n"
    root = write_project(tmp_path, files={"nginx/conf.d/other.conf": other})
    assert real_ip_result(root, upstream_proxies="").status == "ok"
    # At http level the same line applies to authentik's site too.
    (root / "nginx/conf.d/other.conf").write_text("set_real_ip_from 10.0.0.0/8;\n" + other)
    result = real_ip_result(root, upstream_proxies="")
    assert result.status == "fail" and "10.0.0.0/8 (in nginx/conf.d/other.conf)" in result.message


# --------------------------------------------------------------------------- proxy.real-ip: failures


def test_missing_file_fails_but_an_older_project_is_skipped(tmp_path: Path) -> None:
    root = write_project(tmp_path, None)
    missing = real_ip_result(root, upstream_proxies="")
    assert missing.status == "fail" and "real-ip.conf is missing" in missing.message
    assert f"git checkout -- {REAL_IP_CONF}" in (missing.fix or "")
    older = real_ip_result(root)  # no upstream_proxies answer at all: the template predates it
    assert older.status == "skip" and "scaffold update" in (older.fix or "")


@pytest.mark.parametrize(
    ("files", "answer", "named"),
    [
        (
            {REAL_IP_CONF: real_ip("192.0.2.10", "10.0.0.0/8")},
            "192.0.2.10",
            "10.0.0.0/8 (in nginx/snippets/real-ip.conf)",
        ),
        (
            {"nginx/custom/authentik.d/lan.conf": "set_real_ip_from 192.168.1.0/24;\n"},
            "",
            "192.168.1.0/24 (in nginx/custom/authentik.d/lan.conf)",
        ),
        (
            {"nginx/snippets/proxy-authentik.conf": PROXY_SNIPPET + "set_real_ip_from 172.16.0.0/12;\n"},
            "",
            "172.16.0.0/12 (in nginx/snippets/proxy-authentik.conf)",
        ),
        (
            {REAL_IP_CONF: real_ip("192.0.2.10", "unix:")},
            "192.0.2.10",
            "unix: (in nginx/snippets/real-ip.conf)",
        ),
    ],
)
def test_ranges_added_by_hand_fail_and_are_named(
    tmp_path: Path, files: dict[str, str], answer: str, named: str
) -> None:
    root = write_project(tmp_path, files=files)
    result = real_ip_result(root, upstream_proxies=answer)
    assert result.status == "fail", result
    assert "upstream_proxies does not list" in result.message and named in result.message
    assert "anybody there can choose the client address" in result.message
    assert "upstream_proxies" in (result.fix or "") and "nginx -s reload" in (result.fix or "")


@pytest.mark.parametrize("broad", ["0.0.0.0/0", "::/0", "8.0.0.0/7", "2000::/12"])
def test_every_address_or_a_good_part_of_the_internet_fails(tmp_path: Path, broad: str) -> None:
    root = write_project(tmp_path, real_ip("192.0.2.10", broad))
    result = real_ip_result(root, upstream_proxies="192.0.2.10")
    assert result.status == "fail" and f"nginx trusts {broad} (in" in result.message
    assert "good part of the Internet" in result.message
    # Listing it in the answer does not make it right.
    in_answer = real_ip_result(root, upstream_proxies=f"192.0.2.10, {broad}")
    assert in_answer.status == "fail" and "broader than any proxy" in in_answer.message


def test_a_slash_8_and_a_slash_16_are_not_too_broad(tmp_path: Path) -> None:
    root = write_project(tmp_path, real_ip("10.0.0.0/8", "2001:db8::/16"))
    assert real_ip_result(root, upstream_proxies="10.0.0.0/8 2001:db8::/16").status == "ok"


def test_host_bits_are_read_as_nginx_reads_them(tmp_path: Path) -> None:
    root = write_project(tmp_path, real_ip("10.1.2.0/24"))
    assert real_ip_result(root, upstream_proxies="10.1.2.3/24").status == "ok"


def test_a_listed_proxy_missing_from_the_file_fails(tmp_path: Path) -> None:
    root = write_project(tmp_path, real_ip("192.0.2.10"))
    result = real_ip_result(root, upstream_proxies="192.0.2.10, 198.51.100.0/24")
    assert result.status == "fail" and "does not trust 198.51.100.0/24" in result.message
    assert "logged with the proxy's address" in result.message


@pytest.mark.parametrize(
    ("text", "answer", "expected"),
    [
        (real_ip(header=None, recursive=False, extra="real_ip_header X-Forwarded-For;"), "", "without any"),
        (real_ip("192.0.2.10", header=None), "192.0.2.10", "reads X-Real-IP"),
        (real_ip("192.0.2.10", recursive=False), "192.0.2.10", "real_ip_recursive on is missing"),
        (real_ip("192.0.2.10", header="CF-Connecting-IP"), "192.0.2.10", "it must be X-Forwarded-For"),
        (
            real_ip(extra="include /etc/nginx/snippets/cloudflare-ranges.conf;"),
            "cloudflare",
            "it must be CF-Connecting-IP",
        ),
    ],
)
def test_header_settings_must_match_the_answer(tmp_path: Path, text: str, answer: str, expected: str) -> None:
    result = real_ip_result(write_project(tmp_path, text), upstream_proxies=answer)
    assert result.status == "fail", result
    assert expected in result.message
    assert result.fix


def test_cloudflare_ranges_must_be_included_present_and_cloudflares(tmp_path: Path) -> None:
    include = "include /etc/nginx/snippets/cloudflare-ranges.conf;"
    with_cf = real_ip(header="CF-Connecting-IP", extra=include)

    not_included = real_ip_result(
        write_project(tmp_path / "a", real_ip("10.1.2.3", header="CF-Connecting-IP")),
        upstream_proxies="cloudflare 10.1.2.3",
    )
    assert not_included.status == "fail" and "does not include cloudflare-ranges.conf" in not_included.message

    missing = real_ip_result(
        write_project(tmp_path / "b", with_cf, cloudflare=None), upstream_proxies="cloudflare"
    )
    assert missing.status == "fail" and "cloudflare-ranges.conf is missing" in missing.message

    empty = real_ip_result(
        write_project(tmp_path / "c", with_cf, cloudflare="# emptied\n"), upstream_proxies="cloudflare"
    )
    assert empty.status == "fail" and "holds no set_real_ip_from" in empty.message
    assert f"git checkout -- {CLOUDFLARE_CONF}" in (empty.fix or "")

    unasked = real_ip_result(
        write_project(tmp_path / "d", real_ip("10.1.2.3", extra=include)), upstream_proxies="10.1.2.3"
    )
    assert unasked.status == "fail" and "does not list cloudflare" in unasked.message

    tampered = CLOUDFLARE_RANGES + "set_real_ip_from 192.168.0.0/16;\n"
    private = real_ip_result(
        write_project(tmp_path / "e", with_cf, cloudflare=tampered), upstream_proxies="cloudflare"
    )
    assert private.status == "fail" and "192.168.0.0/16, which is not Cloudflare's" in private.message


def test_warnings_for_what_cannot_be_checked_or_is_not_loaded(tmp_path: Path) -> None:
    outside = real_ip("192.0.2.10", extra="include /etc/nginx/more-proxies.conf;")
    result = real_ip_result(write_project(tmp_path / "a", outside), upstream_proxies="192.0.2.10")
    assert result.status == "warn" and "/etc/nginx/more-proxies.conf (outside" in result.message

    unloaded = SITE.replace("include /etc/nginx/snippets/real-ip.conf;", "")
    root = write_project(tmp_path / "b", real_ip("192.0.2.10"), site=unloaded)
    result = real_ip_result(root, upstream_proxies="192.0.2.10")
    assert result.status == "warn" and "does not include real-ip.conf" in result.message
    # Without proxies, not including the (empty) file changes nothing.
    assert real_ip_result(write_project(tmp_path / "c", site=unloaded), upstream_proxies="").status == "ok"


def test_trusted_upstream_includes_cloudflares_ranges_from_the_project(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    ranges = offline_context(root, upstream_proxies="cloudflare, 192.0.2.10").trusted_upstream
    assert ranges == [net("192.0.2.10/32"), net("173.245.48.0/20"), net("2400:cb00::/32")]
    assert offline_context(root, upstream_proxies="192.0.2.10").trusted_upstream == [net("192.0.2.10/32")]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("", "no proxy in front of nginx"),
        ("192.0.2.10, 2001:db8::/48", "X-Forwarded-For only from 2 ranges: 192.0.2.10/32, 2001:db8::/48"),
        ("cloudflare 10.1.2.3", "from CF-Connecting-IP only from Cloudflare's"),
    ],
)
def test_rendered_projects_pass(tmp_path: Path, answer: str, expected: str) -> None:
    from scaffold.answers import load_answers
    from tests.helpers.stack import generate

    root = generate(
        tmp_path / "proj", {"project_name": "realip", "upstream_proxies": answer}, skip_tasks=True
    )
    ctx = Context(root=root, answers=load_answers(root))
    result = check_real_ip(ctx)
    assert result.status == "ok", result
    assert expected in result.message
    # One hand-added line in the user's own folder is caught.
    (root / "nginx/custom/authentik.d/lan.conf").write_text("set_real_ip_from 10.0.0.0/8;\n")
    assert check_real_ip(Context(root=root, answers=load_answers(root))).status == "fail"


# --------------------------------------------------------------------------- stack.client-address: pure parts

REQUEST = '"GET /auth/-/health/live/?scaffold-doctor={} HTTP/1.1"'
LOG = "\n".join(
    [
        "2026/11/27 23:40:01 [error] 30#30: *7 connect() failed (111: Connection refused) while connecting "
        f"to upstream, client: 172.20.0.1, request: {REQUEST.format('aaaa1111')}",
        f'172.20.0.1 - - [27/Nov/2026:23:40:01 +0000] {REQUEST.format("aaaa1111")} 502 157 "-" "-" "-"',
        f'203.0.113.77 - - [27/Nov/2026:23:40:01 +0000] {REQUEST.format("bbbb2222")} 200 0 "-" "-" "-"',
        'fd00:1::1 - - [27/Nov/2026:23:40:02 +0000] "GET /-/health/live/?x=1&scaffold-doctor=cccc3333 '
        'HTTP/1.1"',
    ]
)


def test_logged_address_reads_the_access_line_not_the_error_line() -> None:
    assert logged_address(LOG, "aaaa1111") == "172.20.0.1"
    assert logged_address(LOG, "bbbb2222") == "203.0.113.77"
    assert logged_address(LOG, "cccc3333") == "fd00:1::1"
    assert logged_address(LOG, "aaaa") is None  # a prefix of a nonce is not the nonce
    assert logged_address(LOG, "dddd4444") is None
    assert logged_address("", "aaaa1111") is None


def test_parse_address() -> None:
    assert parse_address("172.20.0.1") == ipaddress.ip_address("172.20.0.1")
    assert parse_address("::ffff:172.20.0.1") == ipaddress.ip_address("172.20.0.1")
    assert parse_address("[fd00::1]") == ipaddress.ip_address("fd00::1")
    assert parse_address("-") is None and parse_address(None) is None


def test_forged_headers_cover_every_way_to_claim_an_address() -> None:
    headers = forged_headers()
    assert headers == {
        "X-Forwarded-For": FORGED,
        "X-Real-IP": FORGED,
        "CF-Connecting-IP": FORGED,
        "Forwarded": f"for={FORGED}",
    }
    assert ipaddress.ip_address(FORGED) in net("203.0.113.0/24")  # TEST-NET-3: nobody's address


def test_client_address_judgement() -> None:
    upstream = [net("192.0.2.10/32"), net("173.245.48.0/20")]
    fine = judge_client_address("172.20.0.1", "172.20.0.1", upstream)
    assert fine.status == "ok"
    assert fine.message == (
        "a request from 172.20.0.1 with a forged X-Forwarded-For/CF-Connecting-IP is logged with its own "
        "address"
    )
    forged = judge_client_address("172.20.0.1", FORGED, upstream)
    assert forged.status == "fail" and f"is logged as {FORGED}" in forged.message
    assert "proxy.real-ip" in (forged.fix or "") and "nginx -s reload" in (forged.fix or "")
    inside = judge_client_address("173.245.48.9", FORGED, upstream)
    assert (
        inside.status == "skip"
        and "reaches nginx from 173.245.48.9, inside upstream_proxies" in inside.message
    )
    assert "client elsewhere" in (inside.fix or "")
    assert judge_client_address("172.20.0.1", "10.9.9.9", upstream).status == "warn"
    for plain, second in ((None, None), ("172.20.0.1", None)):
        gone = judge_client_address(plain, second, upstream)
        assert (
            gone.status == "skip" and "did not show up" in gone.message and "access_log" in (gone.fix or "")
        )
    changed = judge_client_address("host.example", "host.example", upstream)
    assert changed.status == "skip" and "log format" in changed.message
    assert judge_client_address("::ffff:172.20.0.1", "172.20.0.1", []).status == "ok"


# --------------------------------------------------------------------------- stack.client-address: round trip


class FakeNginx:
    """Plays nginx and its container log: each request is logged with `peer`, or with the forged address
    when `honours` says nginx believes forwarded headers."""

    def __init__(self, peer: str, *, honours: bool = False, logs: bool = True) -> None:
        self.peer, self.honours, self.logs_requests = peer, honours, logs
        self.lines: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.since: list[Any] = []

    def https_get(self, port, domain, host_header, path, extra_headers=None, timeout=3.0):
        assert (port, domain, host_header) == (443, DOMAIN, DOMAIN)
        headers = dict(extra_headers or {})
        self.requests.append((path, headers))
        address = headers.get("X-Forwarded-For") if self.honours and headers else self.peer
        if self.logs_requests:
            self.lines.append(
                f'{address} - - [27/Nov/2026:23:40:01 +0000] "GET {path} HTTP/1.1" 200 0 "-" "-" "-"'
            )
        return 200, {}

    # DockerAPI.logs
    def logs(self, container_id: str, *, since: int) -> str:
        assert container_id == "nginx-id"
        self.since.append(since)
        return "\n".join(self.lines) + "\n"


class FakeDocker:
    is_local = True
    endpoint = "unix:///var/run/docker.sock"

    def __init__(self, nginx: FakeNginx) -> None:
        self.logs = nginx.logs


def live_context(root: Path, nginx: FakeNginx, **answers: Any) -> Context:
    """A Context whose Docker is `nginx`'s fake and whose nginx container runs."""
    ctx = offline_context(root, **answers)
    ctx.__dict__["_docker_connection"] = (FakeDocker(nginx), None)
    ctx.__dict__["containers"] = {
        "nginx": [DockerContainer.from_api({"Id": "nginx-id", "State": {"Running": True}})]
    }
    return ctx


def run_client_address(tmp_path: Path, nginx: FakeNginx, monkeypatch, **answers: Any):
    monkeypatch.setattr(doctor_clientaddr, "https_get", nginx.https_get)
    monkeypatch.setattr(doctor_clientaddr, "LOG_WAIT", 0.3)
    monkeypatch.setattr(doctor_clientaddr, "LOG_POLL", 0.05)
    return check_client_address(live_context(write_project(tmp_path), nginx, **answers))


def test_client_address_round_trip_ok(tmp_path: Path, monkeypatch) -> None:
    nginx = FakeNginx("172.20.0.1")
    result = run_client_address(
        tmp_path, nginx, monkeypatch, web_path="/auth/", upstream_proxies="192.0.2.10"
    )
    assert result.status == "ok", result
    (plain_path, plain_headers), (forged_path, sent) = nginx.requests
    assert plain_headers == {} and sent == forged_headers()
    pattern = rf"^/auth/-/health/live/\?{MARK}=[0-9a-f]{{16}}$"
    assert re.match(pattern, plain_path) and re.match(pattern, forged_path) and plain_path != forged_path
    assert all(isinstance(since, int) for since in nginx.since)


def test_client_address_round_trip_fails_when_nginx_believes_the_client(tmp_path: Path, monkeypatch) -> None:
    result = run_client_address(
        tmp_path, FakeNginx("172.20.0.1", honours=True), monkeypatch, upstream_proxies=""
    )
    assert result.status == "fail" and FORGED in result.message


def test_client_address_skips_inside_upstream_proxies_and_without_log_lines(
    tmp_path: Path, monkeypatch
) -> None:
    inside = run_client_address(
        tmp_path / "a", FakeNginx("173.245.48.9", honours=True), monkeypatch, upstream_proxies="cloudflare"
    )
    assert inside.status == "skip" and "inside upstream_proxies" in inside.message
    silent = run_client_address(tmp_path / "b", FakeNginx("172.20.0.1", logs=False), monkeypatch)
    assert silent.status == "skip" and "did not show up" in silent.message
