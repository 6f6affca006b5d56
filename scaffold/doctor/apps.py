"""doctor's checks of the apps behind forward auth (the `apps` answer), one line per concern for all apps.

What goes wrong when people protect an app by hand: the host does not lead here, its certificate never
came, the embedded outpost answers 404 through the app's host (provider not on the outpost, Host
mismatch), the sign-in redirect loops or points at an internal address, or nginx cannot reach the app.
Each check below tries one of these for every app and names the apps at fault. Skipped with --offline.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from scaffold.answer_rules import AnswerProblem, App, app_public_port, parse_apps
from scaffold.doctor.core import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Check,
    Context,
    Fact,
    Outcome,
    fail,
    ok,
    skip,
    through_nginx_skip,
    warn,
)
from scaffold.doctor.network import classify_dns, local_addresses, resolve
from scaffold.doctor.probes import fetch_served_certificate, https_get, run_in_container
from scaffold.doctor.tls import PLACEHOLDER_SUBJECT, cert_info, name_matches

_RANK = {SKIP: 0, OK: 1, WARN: 2, FAIL: 3}


@Fact
def _apps(ctx: Context) -> tuple[App, ...] | Outcome:
    try:
        apps = parse_apps((ctx.answers.raw or {}).get("apps"), domain=ctx.domain)
    except AnswerProblem as problem:
        return fail(f"the apps answer is not valid: {problem.message}", problem.fix)
    return apps or skip("no apps behind forward auth (`scaffold app add` adds one)")


def _per_app(
    ctx: Context, judge: Callable[[Context, App], Outcome], *, through_nginx: bool = False
) -> Outcome:
    """Run `judge` for every app; the worst outcome, with every app's finding in the message."""
    apps = _apps(ctx)
    if isinstance(apps, Outcome):
        return apps
    if through_nginx and (blocked := through_nginx_skip(ctx)) is not None:
        return blocked
    outcomes = [(app, judge(ctx, app)) for app in apps]
    worst = max(outcomes, key=lambda pair: _RANK[pair[1].status])[1]
    message = "; ".join(f"{app.name}: {outcome.message}" for app, outcome in outcomes)
    fixes = [
        f"{app.name}: {outcome.fix}" for app, outcome in outcomes if outcome.fix and outcome.status != OK
    ]
    return Outcome(worst.status, message, "; ".join(fixes) or None)


def _host_header(ctx: Context, app: App) -> str:
    port = app_public_port(ctx.public_url)
    return app.host + (f":{port}" if port else "")


def _dns(ctx: Context, app: App) -> Outcome:
    addresses, error = resolve(app.host)
    return classify_dns(app.host, addresses, error, local_addresses())


def _certificate(ctx: Context, app: App) -> Outcome:
    try:
        info = cert_info(fetch_served_certificate(ctx.https_port, app.host))
    except ssl.SSLError as exc:
        return fail(
            f"nginx refuses TLS for {app.host} ({exc.reason or exc})",
            f"nginx has not loaded nginx/conf.d/apps/{app.name}.conf: `docker compose logs nginx`",
        )
    except OSError as exc:
        return skip(f"nothing answers on 127.0.0.1:{ctx.https_port} ({exc.strerror or exc})")
    issuance = (
        f"`docker compose logs certbot` says why; usually {app.host} does not resolve to this host "
        "(apps.dns) or port 80 does not reach it"
    )
    if info.subject_cn == PLACEHOLDER_SUBJECT:
        return warn(f"{app.host} still has the self-signed placeholder", issuance)
    if not any(name_matches(name, app.host) for name in info.names):
        return fail(f"the certificate served for {app.host} is for {', '.join(info.names)}", issuance)
    left = info.not_after - dt.datetime.now(dt.timezone.utc)  # noqa: UP017
    if left.total_seconds() <= 0:
        return fail(f"the certificate of {app.host} expired", issuance)
    if left < dt.timedelta(days=14):
        return warn(f"the certificate of {app.host} expires in {left.days} days", issuance)
    return ok(f"{app.host}: {info.issuer}, {left.days} days left")


def _outpost_ping(ctx: Context, app: App) -> Outcome:
    status, _ = https_get(ctx.https_port, app.host, _host_header(ctx, app), "/outpost.goauthentik.io/ping")
    if status == 204:
        return ok("the embedded outpost answers through the app's host")
    return fail(
        f"/outpost.goauthentik.io/ping through {app.host} answers {status}, not 204",
        "authentik applies blueprints/scaffold-apps.yaml at start and on change: `docker compose logs "
        "worker | grep -i blueprint`; the embedded outpost must list the provider",
    )


def _login_redirect(ctx: Context, app: App) -> Outcome:
    host = _host_header(ctx, app)
    status, headers = https_get(ctx.https_port, app.host, host, "/")
    location = headers.get("location", "")
    if status != 302 or not location.startswith("/outpost.goauthentik.io/start"):
        return fail(
            f"an anonymous request to {app.host} answers {status} {location}, not the sign-in redirect",
            f"check nginx/conf.d/apps/{app.name}.conf and `docker compose logs nginx`",
        )
    status, headers = https_get(ctx.https_port, app.host, host, location)
    target = urlsplit(headers.get("location", ""))
    expected = urlsplit(ctx.public_url).netloc
    if status != 302 or target.netloc != expected:
        return fail(
            f"the outpost's start sends the browser to {target.netloc or 'nowhere'} ({status}), not to "
            f"authentik at {expected}",
            "a 404 means the provider is not on the embedded outpost (blueprints/scaffold-apps.yaml not "
            "applied: `docker compose logs worker`); another host means the embedded outpost's "
            "authentik_host is wrong",
        )
    return ok(f"an anonymous request is sent to authentik's login at {expected}")


#: A TCP connection from inside the nginx container with what its image has: busybox `nc` (the
#: official Alpine images), bash's /dev/tcp (Debian-based images), or Python.
_TCP_PROBE = (
    'if command -v nc >/dev/null 2>&1; then nc -w 3 "$0" "$1" </dev/null >/dev/null; '
    'elif command -v bash >/dev/null 2>&1; then timeout 3 bash -c \'exec 3<>"/dev/tcp/$0/$1"\' "$0" "$1"; '
    'else python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)" '
    '"$0" "$1"; fi'
)


def _upstream(ctx: Context, app: App) -> Outcome:
    nginx = ctx.running("nginx")
    assert nginx is not None  # through_nginx_skip
    parts = urlsplit(app.upstream)
    host, port = parts.hostname or "", str(parts.port)
    code, output = run_in_container(ctx, nginx, ["sh", "-c", _TCP_PROBE, host, port])
    if code == 0:
        return ok(f"nginx reaches {host}:{port}")
    return fail(
        f"nginx cannot connect to {host}:{port} ({output.strip()[:120] or f'exit code {code}'})",
        f"start the app and attach its service to the `apps` network (from another Compose project: the "
        f"external network {ctx.project}_apps), or correct the upstream: "
        f"`scaffold app remove {app.name}` and add it again",
    )


def check_dns(ctx: Context) -> Outcome:
    return _per_app(ctx, _dns)


def check_certificate(ctx: Context) -> Outcome:
    return _per_app(ctx, _certificate, through_nginx=True)


def check_outpost(ctx: Context) -> Outcome:
    return _per_app(ctx, _outpost_ping, through_nginx=True)


def check_login(ctx: Context) -> Outcome:
    return _per_app(ctx, _login_redirect, through_nginx=True)


def check_upstream(ctx: Context) -> Outcome:
    return _per_app(ctx, _upstream, through_nginx=True)


CHECKS = (
    Check("apps.dns", check_dns),
    Check("apps.certificate", check_certificate),
    Check("apps.outpost", check_outpost),
    Check("apps.login-redirect", check_login),
    Check("apps.upstream", check_upstream),
)
