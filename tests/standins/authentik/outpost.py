"""authentik's embedded outpost under `/outpost.goauthentik.io/`, as nginx's forward auth meets it.

Behaviour taken from authentik's Go code (internal/outpost/proxyv2) at the edges that matter:
- `ping` answers 204 for any host;
- the provider is chosen by `X-Forwarded-Host` when the request has one, else `Host`, matched exactly
  against the host[:port] of a provider's external_host, and only among providers *in the embedded
  outpost*; no match: the request falls through to authentik's core, which answers 404;
- `auth/nginx` reads the original URL from `X-Original-URI` or `X-Original-URL` (neither: 500
  "configuration error"); a session with claims: 200 and the identity headers; a path matching the
  provider's skip_path_regex: 200 without them; otherwise the original URL is saved in the session
  (a Set-Cookie the proxy must pass back) and the answer is 401;
- `start?rd=` only keeps an `rd` on the provider's own host (else the saved URL, else external_host)
  and redirects to `application/o/authorize/` on the embedded outpost's `authentik_host` with a state
  signed for this session; with no `authentik_host` configured the browser is sent to the local API
  address authentik hands the embedded outpost (unusable from outside, as in authentik);
- `callback?X-authentik-auth-callback=true&code=&state=` checks the state against the session cookie,
  redeems the code and stores the claims, then redirects to the saved URL;
- `sign_out` ends every outpost session of that user and redirects to the provider's end-session URL.
The session cookie is `authentik_proxy_<first 8 characters of the client ID>`, host-only, HttpOnly,
SameSite=Lax, Secure for an https external_host. Sessions live in this process's memory.
The outpost answers at the root path whatever AUTHENTIK_WEB__PATH is (authentik's own behaviour with a
web path is unsettled, authentik #13504); authentik's URLs (authorize, login) are under the web path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

from .catalog import Catalog, Provider
from .core import CALLBACK, MAX_SESSIONS, Core
from .log import log
from .reply import Reply, cookies, core_not_found, set_cookie

PREFIX = "/outpost.goauthentik.io"
OUTPOST_NAME = "authentik Embedded Outpost"
VERSION = "goauthentik.io/outpost/standin"
LOCAL_API = "http://localhost:9000"  # what the embedded outpost gets from the API without authentik_host
SESSION_MAX_AGE = 86400
SCOPES = "openid email profile ak_proxy"


@dataclass
class Session:
    client_id: str
    redirect: str = ""
    claims: dict[str, str] = field(default_factory=dict)


class EmbeddedOutpost:
    def __init__(self, catalog: Catalog, core: Core, web_path: str) -> None:
        self.catalog = catalog
        self.core = core
        self.web_path = web_path
        self.secret = secrets.token_bytes(32)
        self.sessions: dict[str, Session] = {}

    def handle(self, method: str, target: str, headers: dict[str, str]) -> Reply | None:
        """Answer a request under /outpost.goauthentik.io; None when the path is elsewhere."""
        path, _, raw_query = target.partition("?")
        if not path.startswith(PREFIX):
            return None
        if path.startswith(PREFIX + "/ping"):
            return Reply(204)
        host = headers.get("x-forwarded-host") or headers.get("host", "")
        provider = self.catalog.served_for_host(host)
        if provider is None:
            log("warning", "no provider of the embedded outpost for this host", host=host, path=path)
            return core_not_found()
        query = parse_qs(raw_query)
        if query.get("X-authentik-auth-callback", [""])[0].lower() == "true" or path == PREFIX + "/callback":
            return self._callback(provider, query, headers)
        if path in (PREFIX + "/auth/nginx", PREFIX + "/auth"):
            return self._auth_nginx(provider, headers)
        if path == PREFIX + "/start":
            return self._start(provider, query, headers)
        if path == PREFIX + "/sign_out":
            return self._sign_out(provider, headers)
        return Reply(404, b"404 page not found\n")

    # ----------------------------------------------------------------- sessions

    def _session(self, provider: Provider, headers: dict[str, str]) -> tuple[str, Session] | None:
        sid = cookies(headers).get(provider.cookie_name, "")
        session = self.sessions.get(sid)
        if session is None or session.client_id != provider.client_id:
            return None
        return sid, session

    def _new_session(self, provider: Provider) -> tuple[str, Session]:
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        sid = secrets.token_urlsafe(32)
        session = Session(provider.client_id)
        self.sessions[sid] = session
        return sid, session

    def _cookie(self, provider: Provider, sid: str) -> tuple[str, str]:
        return set_cookie(provider.cookie_name, sid, secure=provider.https, max_age=SESSION_MAX_AGE)

    # ----------------------------------------------------------------- auth/nginx

    def _auth_nginx(self, provider: Provider, headers: dict[str, str]) -> Reply:
        original = headers.get("x-original-uri") or headers.get("x-original-url", "")
        if not original:
            log("error", "Outpost failed to detect a forward URL from nginx", provider=provider.name)
            return Reply(500, b"configuration error\n")
        found = self._session(provider, headers)
        if found is not None and found[1].claims:
            reply = Reply(200, headers=self._identity(provider, found[1].claims))
            reply.headers.append(("User-Agent", headers.get("user-agent", "")))
            return reply
        forward_path = urlsplit(original).path or original
        if provider.allowlisted(forward_path):
            return Reply(200)
        sid, session = found if found is not None else self._new_session(provider)
        session.redirect = original
        cookie = self._cookie(provider, sid)
        if forward_path.startswith(PREFIX):
            return Reply(200, headers=[cookie])
        return Reply(401, b"unauthorized request\n", headers=[cookie])

    def _identity(self, provider: Provider, claims: dict[str, str]) -> list[tuple[str, str]]:
        base = self._authentik_base()
        return [
            ("X-authentik-username", claims["username"]),
            ("X-authentik-groups", claims["groups"]),
            ("X-authentik-email", claims["email"]),
            ("X-authentik-name", claims["name"]),
            ("X-authentik-uid", claims["uid"]),
            ("X-authentik-jwt", claims["jwt"]),
            ("X-authentik-meta-jwks", f"{base}{self.web_path}application/o/{provider.app_slug}/jwks/"),
            ("X-authentik-meta-outpost", OUTPOST_NAME),
            ("X-authentik-meta-provider", provider.name),
            ("X-authentik-meta-app", provider.app_slug),
            ("X-authentik-meta-version", VERSION),
        ]

    # ----------------------------------------------------------------- start and callback

    def _authentik_base(self) -> str:
        configured = urlsplit(self.catalog.authentik_host())
        if not configured.scheme or not configured.netloc:
            return LOCAL_API
        return f"{configured.scheme}://{configured.netloc}"

    def _checked_rd(self, provider: Provider, rd: str) -> str:
        """`rd` when it stays on the provider's host (a bare path is completed), else ''."""
        parts = urlsplit(rd)
        if not parts.netloc:
            return provider.external_host + (rd if rd.startswith("/") else "/" + rd)
        if parts.netloc != provider.host:
            log("warning", "redirect URI did not contain external host", url=rd, ext=provider.external_host)
            return ""
        return rd

    def _start(self, provider: Provider, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        found = self._session(provider, headers)
        sid, session = found if found is not None else self._new_session(provider)
        rd = self._checked_rd(provider, query["rd"][0]) if query.get("rd") else ""
        redirect = rd or session.redirect or provider.external_host
        issuer = f"goauthentik.io/outpost/{provider.client_id}"
        state = self._sign({"iss": issuer, "sid": sid, "rd": redirect})
        base = self._authentik_base()
        if base == LOCAL_API:
            log("warning", "Outpost has localhost/blank API Connection but no authentik_host is configured.")
        params = {
            "client_id": provider.client_id,
            "redirect_uri": provider.external_host + CALLBACK,
            "response_type": "code",
            "scope": SCOPES,
            "state": state,
        }
        location = f"{base}{self.web_path}application/o/authorize/?{urlencode(params)}"
        return Reply(302, location=location, headers=[self._cookie(provider, sid)])

    def _callback(self, provider: Provider, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        state = self._verify(query.get("state", [""])[0])
        found = self._session(provider, headers)
        if (
            state is None
            or state.get("iss") != f"goauthentik.io/outpost/{provider.client_id}"
            or found is None
            or state.get("sid") != found[0]
        ):
            log("warning", "invalid state", provider=provider.name)
            return Reply(302, location=provider.external_host)
        user = self.core.redeem(query.get("code", [""])[0], provider.client_id)
        if user is None:
            log("warning", "failed to redeem code", provider=provider.name)
            return Reply(400)
        sid, session = found
        groups = self.catalog.groups_of(user.username)
        session.claims = {
            "username": user.username,
            "groups": "|".join(groups),
            "email": user.email,
            "name": user.name,
            "uid": user.uid,
            "jwt": self._sign({"sub": user.uid, "preferred_username": user.username, "groups": groups}),
        }
        target = str(state.get("rd") or provider.external_host)
        return Reply(302, location=target, headers=[self._cookie(provider, sid)])

    # ----------------------------------------------------------------- sign out

    def _sign_out(self, provider: Provider, headers: dict[str, str]) -> Reply:
        found = self._session(provider, headers)
        if found is None or not found[1].claims:
            rd = urlencode({"rd": provider.external_host + PREFIX + "/sign_out"})
            start = f"{provider.external_host}{PREFIX}/start?{rd}"
            return Reply(302, location=start)
        username = found[1].claims["username"]
        for sid in [s for s, session in self.sessions.items() if session.claims.get("username") == username]:
            del self.sessions[sid]
        end = f"{self._authentik_base()}{self.web_path}application/o/{provider.app_slug}/end-session/"
        return Reply(302, location=end)

    # ----------------------------------------------------------------- signed values

    def _sign(self, payload: dict) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=")
        mac = hmac.new(self.secret, body, hashlib.sha256).digest()
        return (body + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()

    def _verify(self, token: str) -> dict | None:
        body, _, mac = token.encode().partition(b".")
        expected = base64.urlsafe_b64encode(hmac.new(self.secret, body, hashlib.sha256).digest()).rstrip(b"=")
        if not body or not hmac.compare_digest(mac, expected):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except ValueError:
            return None
