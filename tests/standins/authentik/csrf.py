"""authentik's CSRF Origin check (Django's CsrfViewMiddleware), as the login form meets it.

An unsafe request (POST, PUT, PATCH, DELETE) that carries an `Origin` header passes only when
the origin is exactly `scheme://host` of the request as authentik derives it: the scheme and host
from X-Forwarded-Proto / X-Forwarded-Host when the peer is a trusted proxy, else the connection's
own scheme and the Host header (see trust.TrustPolicy.view). The comparison is a plain string
comparison, so `https://sso.example.com` does not match a host `sso.example.com:8443`. authentik
sets no CSRF_TRUSTED_ORIGINS, so nothing else passes.

Not modelled: the Referer check Django makes for HTTPS requests without `Origin`, and the CSRF
token itself; every browser sends `Origin` on a POST, so the Origin check is what a proxy that
rewrites Host breaks.
"""

from __future__ import annotations

from .trust import RequestView

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_refusal(method: str, headers: dict[str, str], view: RequestView) -> str | None:
    """Django's reason for refusing the request, or None when the Origin check passes."""
    origin = headers.get("origin")
    if method not in UNSAFE_METHODS or origin is None:
        return None
    if origin == f"{view.scheme}://{view.host}":
        return None
    return f"Origin checking failed - {origin} does not match any trusted origins."
