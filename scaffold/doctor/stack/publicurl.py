"""doctor's public URL check: does `public_url` agree with how users can reach this stack?

`public_url` is where users open authentik; authentik builds its links and redirects from it
(AUTHENTIK_WEB__BASE_URL) and nginx redirects plain HTTP there. It need not be the port nginx
publishes: a router's port forward, a tunnel or a proxy in front may take public port 443 to a
high host port. doctor cannot see a router, but it can see which host ports nginx publishes, which
proxies are listed in front of it, and the base URL authentik really runs with. When these do not
add up, users get links to a port that is closed, or authentik's CSRF check fails. The judgement
is a pure function, tested without Docker.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from scaffold.doctor.core import Check, Context, Outcome, ok, running_or_skip, skip, warn
from scaffold.doctor.upstream import UpstreamAnswer

BASE_URL_KEY = "AUTHENTIK_WEB__BASE_URL"


def judge_public_url(
    public_url: str,
    published: list[int],
    upstream: UpstreamAnswer,
    *,
    server_base_url: str | None = None,
) -> Outcome:
    """What the public URL, nginx's published HTTPS ports and the listed upstream proxies say together.

    `server_base_url`: the AUTHENTIK_WEB__BASE_URL the running server was started with, if any.
    """
    parts = urlsplit(public_url)
    port = parts.port or 443
    host = parts.hostname or ""
    if server_base_url is not None and server_base_url.rstrip("/") != public_url.rstrip("/"):
        return warn(
            f"authentik runs with {BASE_URL_KEY} {server_base_url or '(unset)'}, but public_url is "
            f"{public_url}: its links and redirects lead to the old address",
            "`docker compose up -d` (when compose.yaml sets another base URL, `scaffold update` renders "
            "it again from public_url first)",
        )
    shown = ", ".join(map(str, published))
    if port in published:
        return ok(f"users open {public_url}, and nginx publishes host port {port}")
    if not upstream.empty:
        return ok(
            f"users open {public_url}; nginx publishes host port {shown} behind the proxies listed in "
            "upstream_proxies, which take them there"
        )
    return warn(
        f"public_url {public_url} is port {port}, but nginx publishes only host port {shown} and no "
        "proxy is listed in front of it: unless a router or tunnel forwards port "
        f"{port} to {published[0]}, users cannot open authentik's links and redirects",
        f"if users open https://{host}:{published[0]} themselves: `scaffold update --data "
        f"public_url=https://{host}:{published[0]}`; if a proxy in front takes them here: `scaffold update "
        "--data upstream_proxies=<its address>`; with a router's port forward this warning is expected",
    )


def check_public_url(ctx: Context) -> Outcome:
    if isinstance(nginx := running_or_skip(ctx, "nginx"), Outcome):
        return nginx
    published = nginx.host_ports(443)
    if not published:
        return skip("not checked: nginx publishes no port for HTTPS (see network.port-https)")
    server = ctx.running("server")
    base_url = None if server is None else server.env.get(BASE_URL_KEY, "")
    return judge_public_url(ctx.public_url, published, ctx.upstream_answer, server_base_url=base_url)


CHECKS = (Check("stack.public-url", check_public_url),)
