"""doctor's login check: does https://domain{web_path} lead to authentik's login flow?

Opening authentik's address is the first thing every user does, and with authentik under a path
(`web_path`) three things must agree for it to work: nginx proxies that path, authentik runs with
AUTHENTIK_WEB__PATH set to it, and nginx can reach authentik. doctor asks as an anonymous browser
would, through nginx on 127.0.0.1, and follows the redirects that stay on the site (at most 5) to
the flow page. The judgement is a pure function of the hops, so it is tested without Docker.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from scaffold.doctor.core import (
    RELOAD,
    WEB_PATH_KEY,
    Check,
    Context,
    Outcome,
    fail,
    ok,
    running_web_path,
    through_nginx_skip,
    unless_starting,
)
from scaffold.doctor.probes import https_get

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
FLOW_SUBPATH = "if/flow/"
UNREACHABLE_FIX = (
    "`docker compose ps server` and `docker compose logs --tail 50 server nginx`; nginx resolves `server` "
    "at start, so after recreating authentik: `docker compose restart nginx`"
)


@dataclass(frozen=True)
class Hop:
    """One request of the walk: the path (and query) asked for, the status, the Location sent."""

    path: str
    status: int
    location: str | None = None


def _site(origin: str) -> tuple[str, int]:
    parts = urlsplit(f"https://{origin}/")
    return (parts.hostname or "").lower(), parts.port or 443


def next_path(origin: str, path: str, location: str) -> str | None:
    """Where a redirect from `path` leads, as a path on the site; None when it leaves the site."""
    target = urlsplit(urljoin(f"https://{origin}{path}", location))
    if target.scheme != "https" or ((target.hostname or "").lower(), target.port or 443) != _site(origin):
        return None
    return target.path + (f"?{target.query}" if target.query else "")


def _path(path: str) -> str:
    return urlsplit(path).path


def judge_login_flow(
    hops: list[Hop], *, web_path: str, origin: str, server_web_path: str | None = None
) -> Outcome:
    """What the walk from web_path says. `server_web_path`: the running server's AUTHENTIK_WEB__PATH."""
    url = f"https://{origin}{web_path}"
    last = hops[-1]
    if last.status == 200 and _path(last.path).startswith(web_path + FLOW_SUBPATH):
        return ok(f"{url} answers with authentik's login flow ({_path(last.path)})")
    chain = " -> ".join(f"{_path(hop.path)} {hop.status}" for hop in hops)
    gateway = next((hop for hop in hops if hop.status in (502, 503, 504)), None)
    if gateway is not None:
        return fail(
            f"nginx answers {gateway.status} for {_path(gateway.path)}: it cannot reach authentik's server",
            UNREACHABLE_FIX,
        )
    if (escape := _escape(hops, origin, web_path)) is not None:
        hop, target = escape
        return fail(
            f"authentik does not run under {web_path}: {_path(hop.path)} redirects to {_path(target)}, "
            f"outside web_path ({chain})"
            + (f"; the running server has {WEB_PATH_KEY} {server_web_path}" if server_web_path else ""),
            _env_fix(web_path),
        )
    if last.status in REDIRECTS:
        return _redirect_end(last, origin, url, chain)
    if server_web_path is not None and server_web_path != web_path:
        return fail(
            f"authentik runs with {WEB_PATH_KEY} {server_web_path}, but web_path is {web_path}: {chain}",
            _env_fix(web_path),
        )
    return _answer_end(hops, web_path, url, chain)


def _env_fix(web_path: str) -> str:
    wanted = (
        f"must not set {WEB_PATH_KEY} (web_path is /)"
        if web_path == "/"
        else f"must set `{WEB_PATH_KEY}: {web_path}` for server and worker"
    )
    return (
        f"compose.yaml {wanted}; `git diff compose.yaml` shows hand edits, `scaffold update` renders it "
        "again; then `docker compose up -d` (see stack.env-applied)"
    )


def _escape(hops: list[Hop], origin: str, web_path: str) -> tuple[Hop, str] | None:
    """The first redirect that leaves web_path on this site, with where it leads."""
    for hop in hops:
        target = (
            next_path(origin, hop.path, hop.location) if hop.status in REDIRECTS and hop.location else None
        )
        if target is not None and not _path(target).startswith(web_path):
            return hop, target
    return None


def _redirect_end(last: Hop, origin: str, url: str, chain: str) -> Outcome:
    """The walk stopped on a redirect: no Location, another site, or too many."""
    if not last.location:
        return fail(f"{_path(last.path)} answers {last.status} without a Location ({chain})", UNREACHABLE_FIX)
    if next_path(origin, last.path, last.location) is None:
        return fail(
            f"{_path(last.path)} redirects to another site, {last.location} ({chain}): authentik does "
            f"not know its public address is https://{origin}",
            f"compose.yaml must set `AUTHENTIK_WEB__BASE_URL: https://{origin}` (the public_url answer; "
            "`scaffold update` renders it), and nginx must pass the Host the browser used (see "
            f"proxy.headers); then {RELOAD} and `docker compose up -d`",
        )
    return fail(
        f"more than {MAX_REDIRECTS} redirects from {url}: {chain}",
        "`docker compose logs --tail 50 server nginx`; a redirect in nginx/custom/authentik.d/ or "
        "nginx/conf.d/authentik.conf may loop with authentik's own (`git diff nginx/`)",
    )


def _answer_end(hops: list[Hop], web_path: str, url: str, chain: str) -> Outcome:
    """The walk stopped on an answer that is not the login flow."""
    last = hops[-1]
    if len(hops) == 1 and last.status == 404:
        return fail(
            f"{url} answers 404: nginx does not proxy {web_path} to authentik",
            f"the 443 server in nginx/conf.d/authentik.conf needs `location ^~ {web_path}` (or "
            "`location /` for '/') with `proxy_pass` to authentik; the template's version has it "
            f"(`git diff nginx/`); then {RELOAD}",
        )
    if last.status == 404:
        return fail(
            f"authentik's login flow is not found ({chain}): the default authentication flow is missing, "
            "or authentik has not applied its blueprints yet",
            "`docker compose logs --tail 50 worker` (the worker applies the default blueprints); in the "
            "admin interface, check the brand's authentication flow",
        )
    if last.status == 200:
        return fail(
            f"{_path(last.path)} answers 200 but is not authentik's login flow ({chain}): something other "
            "than authentik answers there",
            "look at the locations of the 443 server in nginx/conf.d/authentik.conf and "
            f"nginx/custom/authentik.d/ (`git diff nginx/`): `location ^~ {web_path}` must proxy to "
            "authentik",
        )
    return fail(
        f"{url} does not lead to authentik's login flow: {chain}",
        "`docker compose logs --tail 50 server nginx` say why",
    )


def walk(ctx: Context) -> list[Hop]:
    """GET web_path through nginx and follow the redirects that stay on the site."""
    hops: list[Hop] = []
    path: str | None = ctx.web_path
    while path is not None and len(hops) <= MAX_REDIRECTS:
        status, headers = https_get(ctx.https_port, ctx.domain, ctx.public_origin, path)
        location = headers.get("location")
        hops.append(Hop(path, status, location))
        path = next_path(ctx.public_origin, path, location) if status in REDIRECTS and location else None
    return hops


def check_login_flow(ctx: Context) -> Outcome:
    if (blocked := through_nginx_skip(ctx)) is not None:
        return blocked
    server = ctx.running("server")
    assert server is not None
    url = f"https://{ctx.public_origin}{ctx.web_path}"
    try:
        hops = walk(ctx)
    except (OSError, ConnectionError) as exc:
        return fail(
            f"cannot open {url} via 127.0.0.1:{ctx.https_port}: {exc}",
            "`docker compose ps nginx`, `docker compose logs --tail 50 nginx`",
        )
    server_path = running_web_path(server)
    outcome = judge_login_flow(
        hops, web_path=ctx.web_path, origin=ctx.public_origin, server_web_path=server_path
    )
    return unless_starting(outcome, server)


CHECKS = (Check("stack.login-flow", check_login_flow),)
