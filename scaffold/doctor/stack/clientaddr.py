"""doctor's live proof that a client cannot choose the address nginx logs and authentik sees.

proxy.real-ip reads the files; this asks the running nginx. doctor sends two requests through
nginx from this host, each marked with a random nonce: a plain one, and one with forged
X-Forwarded-For, X-Real-IP, CF-Connecting-IP and Forwarded headers. nginx's access log (the
container's log: the image links access.log to stdout) starts each line with the address nginx
decided on ($remote_addr). Unless this host is one of the upstream proxies, both lines must show the
same address. Parsing and judging are pure functions, tested without Docker.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time

from scaffold.doctor.core import Check, Context, Outcome, fail, ok, skip, through_nginx_skip, warn
from scaffold.doctor.probes import https_get
from scaffold.subnets import Network

#: From TEST-NET-3 (RFC 5737): nobody's address, so seeing it in the log can only mean the forgery worked.
FORGED = "203.0.113.77"
MARK = "scaffold-doctor"
HEALTH_SUBPATH = "-/health/live/"
#: nginx writes the access log in batches (flush=1s); Docker needs a moment more.
LOG_WAIT = 5.0
LOG_POLL = 0.25
#: nginx's error log lines (which may quote the request) start with a date, not an address.
_ERROR_LOG = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def forged_headers(address: str = FORGED) -> dict[str, str]:
    """Every header a proxy may use for the client's address, all claiming `address`."""
    return {
        "X-Forwarded-For": address,
        "X-Real-IP": address,
        "CF-Connecting-IP": address,
        "Forwarded": f"for={address}",
    }


def logged_address(log: str, nonce: str) -> str | None:
    """The first field ($remote_addr in nginx's `main` format) of the access-log line for `nonce`."""
    marker = re.compile(rf"[?&]{MARK}={re.escape(nonce)}(?![0-9A-Za-z])")
    for line in log.splitlines():
        if marker.search(line) and not _ERROR_LOG.match(line):
            fields = line.split()
            return fields[0] if fields else None
    return None


def parse_address(text: str | None) -> IpAddress | None:
    """An address as nginx logs it; IPv4-mapped IPv6 addresses as IPv4."""
    try:
        address = ipaddress.ip_address((text or "").strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def judge_client_address(plain: str | None, forged: str | None, trusted: list[Network]) -> Outcome:
    """`plain`/`forged`: the first field of each request's log line (None: no line found)."""
    log_fix = (
        "keep `access_log /var/log/nginx/access.log main ...;` in the 443 server of "
        "nginx/conf.d/authentik.conf (the nginx image sends that file to the container's log), then reload "
        "nginx"
    )
    if plain is None or forged is None:
        return skip(
            "not checked: doctor's requests did not show up in nginx's container log within "
            f"{LOG_WAIT:.0f} s (the access log was changed or sent elsewhere)",
            log_fix,
        )
    peer = parse_address(plain)
    if peer is None:
        return skip(
            f"not checked: nginx's access log lines do not start with the client address ({plain!r}): the "
            "log format was changed",
            log_fix,
        )
    if any(peer.version == net.version and peer in net for net in trusted):
        return skip(
            f"not checked: this machine reaches nginx from {peer}, inside upstream_proxies, so nginx rightly "
            "takes its word for the client address",
            f"check from a client elsewhere: send a request with `X-Forwarded-For: {FORGED}` and look for "
            "its own address in `docker compose logs nginx`",
        )
    seen = parse_address(forged)
    headers = "X-Forwarded-For/CF-Connecting-IP"
    if seen is not None and seen == parse_address(FORGED):
        return fail(
            f"a request from {peer} with a forged {headers} is logged as {FORGED}: anybody who reaches nginx "
            "can choose the client address nginx logs and authentik sees",
            "nginx/snippets/real-ip.conf (or another file of the site) trusts a range it should not: compare "
            "it with upstream_proxies (see proxy.real-ip), then `docker compose exec nginx nginx -s reload`",
        )
    if seen == peer:
        return ok(f"a request from {peer} with a forged {headers} is logged with its own address")
    return warn(
        f"a request from {peer} with a forged {headers} is logged as {forged}, neither its own address "
        "nor the forged one",
        "look at nginx/snippets/real-ip.conf (see proxy.real-ip) and at the lines in "
        "`docker compose logs nginx`",
    )


def check_client_address(ctx: Context) -> Outcome:
    if (blocked := through_nginx_skip(ctx, needs_server=False)) is not None:
        return blocked
    nginx = ctx.running("nginx")
    assert nginx is not None
    plain_nonce, forged_nonce = secrets.token_hex(8), secrets.token_hex(8)
    path = f"{ctx.web_path}{HEALTH_SUBPATH}?{MARK}="
    since = int(time.time()) - 1
    try:
        https_get(ctx.https_port, ctx.domain, ctx.public_origin, path + plain_nonce)
        https_get(ctx.https_port, ctx.domain, ctx.public_origin, path + forged_nonce, forged_headers())
    except (OSError, ConnectionError) as exc:
        return skip(
            f"not checked: nginx does not answer on 127.0.0.1:{ctx.https_port} ({exc}; see stack.login-flow)"
        )
    deadline = time.monotonic() + LOG_WAIT
    while True:
        try:
            log = ctx.docker.logs(nginx.id, since=since)
        except Exception as exc:  # a logging driver Docker cannot read back, a removed container
            return skip(
                f"not checked: Docker cannot show nginx's log ({exc})",
                "use a logging driver `docker logs` can read (json-file, local, journald)",
            )
        plain, forged = logged_address(log, plain_nonce), logged_address(log, forged_nonce)
        if (plain is not None and forged is not None) or time.monotonic() > deadline:
            break
        time.sleep(LOG_POLL)
    return judge_client_address(plain, forged, ctx.trusted_upstream)


CHECKS = (Check("stack.client-address", check_client_address),)
