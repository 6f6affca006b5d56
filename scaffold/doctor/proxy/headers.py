"""doctor's check of the headers nginx passes to authentik (Host, X-Forwarded-*, WebSocket upgrade).

It reads the nginx configuration in the project, so it needs neither the network nor a running stack.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from scaffold.doctor.core import Context, Outcome, fail, ok, warn

#: The Host as the browser sent it, once conf.d/authentik.conf's map has checked it is this site's
#: (`$http_host` unchecked works too, but lets any Host through).
HOST_VARIABLES = ("$scaffold_site_host", "$http_host")
HOST_DIRECTIVE = "proxy_set_header Host $scaffold_site_host"
#: Where no such map exists (a project from before public_url): authentik's guide's line.
PLAIN_HOST_DIRECTIVE = "proxy_set_header Host $http_host"
_SITE_HOST_MAP = re.compile(r"map\s+\$http_host\s+\$scaffold_site_host\b")

#: (what, pattern, why) for the directives authentik's reverse-proxy guide asks for.
_HEADER_RULES = (
    (
        "proxy_http_version 1.1",
        r"proxy_http_version\s+1\.1\s*;",
        "WebSockets (outposts, the UI's live updates) need HTTP/1.1 to the upstream",
    ),
    (
        HOST_DIRECTIVE,
        r"proxy_set_header\s+Host\s+\"?\$(?:host|http_host|scaffold_site_host)\b",
        "authentik's CSRF check compares Origin with Host",
    ),
    (
        "proxy_set_header X-Forwarded-Proto $scheme",
        r"proxy_set_header\s+X-Forwarded-Proto\s+\S",
        "without it authentik builds http:// URLs (mixed content)",
    ),
    (
        "proxy_set_header X-Forwarded-For $remote_addr",
        r"proxy_set_header\s+X-Forwarded-For\s+\S",
        "authentik would log nginx's address for every client",
    ),
    (
        "proxy_set_header Upgrade $http_upgrade",
        r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;",
        'WebSocket upgrades are not passed on ("Connection error, reconnecting")',
    ),
    (
        "proxy_set_header Connection $connection_upgrade_keepalive",
        r"proxy_set_header\s+Connection\s+\S",
        'WebSocket upgrades are not passed on ("Connection error, reconnecting")',
    ),
)


def nginx_config_text(root: Path) -> str:
    """The site configuration nginx loads from the project (comments removed)."""
    texts = []
    for pattern in ("nginx/conf.d/*.conf", "nginx/snippets/*.conf", "nginx/custom/authentik.d/*.conf"):
        for path in sorted(root.glob(pattern)):
            try:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return re.sub(r"(?m)#.*$", "", "\n".join(texts))


def host_header_problem(value: str, public_url: str) -> str | None:
    """Why `proxy_set_header Host <value>` breaks authentik for users of `public_url`, or None.

    authentik compares the browser's Origin with the Host it gets, so the Host must be the one the
    browser sent (HOST_VARIABLES): `$host` drops the port, `$host:PORT` puts the published port in
    where a router, tunnel or proxy in front made the browser send none.
    """
    value = value.lower()
    if value in HOST_VARIABLES:
        return None
    public_port = urlsplit(public_url).port
    if value == "$host":
        if public_port is None:
            return None
        return (
            f"$host drops the port: browsers on {public_url} send Origin {public_url}, which no longer "
            'matches, so authentik\'s CSRF check fails ("Origin checking failed")'
        )
    return (
        f"Host is replaced by {value}: a browser that came another way (a router, tunnel or proxy in "
        "front, or the published port) sends an Origin that no longer matches, so authentik's CSRF "
        'check fails ("Origin checking failed") and forward auth picks no provider'
    )


def missing_proxy_headers(text: str, public_url: str) -> list[tuple[str, str]]:
    """The directives authentik needs that `text` lacks, each with why it matters."""
    # Recommend nothing nginx cannot load: $scaffold_site_host exists only with the template's map.
    wanted_host = HOST_DIRECTIVE if _SITE_HOST_MAP.search(text) else PLAIN_HOST_DIRECTIVE
    missing = [
        (wanted_host if what == HOST_DIRECTIVE else what, why)
        for what, pattern, why in _HEADER_RULES
        if not re.search(pattern, text, re.I)
    ]
    host = re.search(r"proxy_set_header\s+Host\s+\"?([^\s;\"]+)\"?\s*;", text, re.I)
    reported = any(what.startswith("proxy_set_header Host ") for what, _ in missing)
    if host and not reported and (why := host_header_problem(host.group(1), public_url)):
        missing.append((wanted_host, why))
    values = re.findall(r"proxy_set_header\s+X-Forwarded-For\s+\"?([^\s;\"]+)", text, re.I)
    if any(value.lower() == "$proxy_add_x_forwarded_for" for value in values):
        missing.append(
            (
                "proxy_set_header X-Forwarded-For $remote_addr",
                "$proxy_add_x_forwarded_for appends to what the client sent: authentik before 2026.8 takes "
                "the leftmost entry, so clients can choose the address authentik logs",
            )
        )
    others = sorted({v for v in values if v.lower() not in ("$remote_addr", "$proxy_add_x_forwarded_for")})
    if others:
        missing.append(
            (
                "proxy_set_header X-Forwarded-For $remote_addr",
                f"X-Forwarded-For is set to {', '.join(others)}: authentik trusts nginx's header, so it must "
                "carry the address nginx decided on ($remote_addr; nginx/snippets/real-ip.conf takes it from "
                "upstream proxies): a client header ($http_...) lets clients choose it",
            )
        )
    return missing


def check_proxy_headers(ctx: Context) -> Outcome:
    text = nginx_config_text(ctx.root)
    if not text.strip():
        return fail(
            "no nginx configuration in nginx/conf.d or nginx/snippets",
            "restore it from git (`git checkout -- nginx/`) or re-render it with `scaffold update`",
        )
    missing = missing_proxy_headers(text, ctx.public_url)
    if missing:
        listed = "; ".join(f"{what} ({why})" for what, why in missing)
        return warn(
            f"nginx's configuration lacks what authentik needs from its proxy: {listed}",
            "add these lines to nginx/snippets/proxy-authentik.conf (`git diff nginx/` shows your edits; "
            "the template's version has them, `scaffold update` brings a project from an older release up "
            "to it), then `docker compose exec nginx nginx -s reload`",
        )
    return ok("nginx passes Host, X-Forwarded-Proto/-For and the WebSocket upgrade headers over HTTP/1.1")
