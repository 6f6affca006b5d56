"""authentik's core side of forward auth: login sessions, the OAuth2 authorize step and codes.

The embedded outpost sends a browser to `application/o/authorize/` on authentik's own host. Without an
authentik session that leads through the login flow (`flows/-/default/authentication/?next=...`);
with one, the application's policy bindings decide: a user in none of the bound groups gets
authentik's "Access denied" page (a TemplateResponse, so HTTP 200, and no code); otherwise the browser
goes back to the provider's callback with a single-use code.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode

from .catalog import Catalog, Provider, User
from .reply import Reply, cookies, set_cookie

SESSION_COOKIE = "authentik_session"
CALLBACK = "/outpost.goauthentik.io/callback?X-authentik-auth-callback=true"
CODE_LIFETIME = 60.0
MAX_SESSIONS = 100_000


def _access_denied() -> Reply:
    page = (
        b"<!DOCTYPE html>\n<html><head><title>Access denied</title></head><body>"
        b"<h1>Access denied</h1><p>Request has been denied.</p></body></html>\n"
    )
    return Reply(200, page, "text/html; charset=utf-8")


@dataclass(frozen=True)
class Grant:
    client_id: str
    username: str
    expires: float


class Core:
    """In-memory sessions and codes of one authentik server process."""

    def __init__(self, catalog: Catalog, web_path: str) -> None:
        self.catalog = catalog
        self.web_path = web_path
        self.sessions: dict[str, str] = {}
        self.codes: dict[str, Grant] = {}

    def current_user(self, headers: dict[str, str]) -> User | None:
        username = self.sessions.get(cookies(headers).get(SESSION_COOKIE, ""))
        return self.catalog.user(username) if username else None

    def login(self, username: str, secure: bool) -> tuple[str, str] | None:
        """Start a session for a known user; the Set-Cookie header, or None for an unknown user."""
        if self.catalog.user(username) is None:
            return None
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = username
        return set_cookie(SESSION_COOKIE, sid, secure=secure)

    def handle(self, method: str, inner: str, target: str, headers: dict[str, str]) -> Reply | None:
        """Answer the forward-auth part of authentik's own URLs; None for everything else."""
        query = parse_qs(target.partition("?")[2])
        if inner == "/application/o/authorize/":
            return self._authorize(target, query, headers)
        if inner == "/flows/-/default/authentication/":
            location = f"{self.web_path}if/flow/default-authentication-flow/"
            if "next" in query:
                location += "?" + urlencode({"next": query["next"][0]})
            return Reply(302, location=location)
        if inner.startswith("/application/o/") and inner.endswith("/end-session/"):
            return Reply(302, location=f"{self.web_path}if/flow/default-provider-invalidation-flow/")
        return None

    def _authorize(self, target: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        provider = self.catalog.by_client_id(query.get("client_id", [""])[0])
        if provider is None:
            return Reply(400, b"invalid client identifier\n")
        redirect_uri = query.get("redirect_uri", [""])[0]
        if redirect_uri != provider.external_host + CALLBACK:
            return Reply(400, b"Redirect URI Error: the redirect URI does not match the provider's\n")
        user = self.current_user(headers)
        if user is None:
            login = f"{self.web_path}flows/-/default/authentication/?next={quote(target, safe='')}"
            return Reply(302, location=login)
        if not self._may_use(user, provider):
            return _access_denied()
        code = secrets.token_urlsafe(24)
        self._drop_expired()
        self.codes[code] = Grant(provider.client_id, user.username, time.monotonic() + CODE_LIFETIME)
        state = query.get("state", [""])[0]
        return Reply(302, location=f"{redirect_uri}&{urlencode({'code': code, 'state': state})}")

    def _may_use(self, user: User, provider: Provider) -> bool:
        if not provider.groups:
            return True  # no binding: authentik lets every user in
        return bool(set(provider.groups) & set(self.catalog.groups_of(user.username)))

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for code in [c for c, g in self.codes.items() if g.expires < now]:
            del self.codes[code]

    def redeem(self, code: str, client_id: str) -> User | None:
        """The user a code was issued to, once; None for an unknown, reused or foreign code."""
        grant = self.codes.pop(code, None)
        if grant is None or grant.client_id != client_id or grant.expires < time.monotonic():
            return None
        return self.catalog.user(grant.username)
