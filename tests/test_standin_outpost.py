"""The authentik stand-in's embedded outpost, blueprint reading and the echo app, in-process.

These are the edges of authentik's forward auth the issue-15 tests rely on: which host is served, what
auth/nginx answers with and without a session, the login round trip through authentik's own host, the
group restriction, and the blueprint rules that make a hand-written blueprint fail in real authentik.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.helpers.blueprints import validate_blueprint
from tests.standins.authentik import blueprints
from tests.standins.authentik.catalog import Catalog
from tests.standins.authentik.echo import serve as serve_echo
from tests.standins.authentik.log import AccessLog
from tests.standins.authentik.server import App, serve
from tests.standins.authentik.trust import TrustPolicy, parse_trusted_cidrs

SSO = "sso.example.test"
APP = "whoami.example.test"
FLOW = "!Find [authentik_flows.flow, [slug, default-provider-authorization-implicit-consent]]"


def provider_entries(name: str, host: str, extra: str = "") -> str:
    return f"""
  - model: authentik_providers_proxy.proxyprovider
    id: provider-{name}
    identifiers:
      name: {name}
    attrs:
      mode: forward_single
      external_host: https://{host}
      authorization_flow: {FLOW}{extra}
  - model: authentik_core.application
    id: app-{name}
    identifiers:
      slug: {name}
    attrs:
      name: {name}
      provider: !KeyOf provider-{name}
"""


def outpost_entry(*names: str, authentik_host: str = f"https://{SSO}/") -> str:
    providers = "".join(f"\n        - !KeyOf provider-{name}" for name in names)
    return f"""
  - model: authentik_outposts.outpost
    identifiers:
      name: authentik Embedded Outpost
    attrs:
      config:
        authentik_host: {authentik_host}
      providers:{providers}
"""


def blueprint(*parts: str) -> str:
    return "version: 1\nmetadata:\n  name: test\nentries:" + "".join(parts)


# The forward-auth example of authentik's docs (proxy provider, application, embedded outpost), as a
# user would write it, with a group restriction.
DOCS_EXAMPLE = """# yaml-language-server: $schema=https://goauthentik.io/blueprints/schema.json
version: 1
metadata:
  name: whoami forward auth
  labels:
    blueprints.goauthentik.io/instantiate: "true"
context:
  host: whoami.example.test
entries:
  - model: authentik_providers_proxy.proxyprovider
    id: provider
    identifiers:
      name: whoami
    attrs:
      mode: forward_single
      external_host: !Format ["https://%s", !Context host]
      authorization_flow: !Find
        [authentik_flows.flow, [slug, default-provider-authorization-implicit-consent]]
      access_token_validity: hours=24
  - model: authentik_core.application
    id: app
    identifiers:
      slug: whoami
    attrs:
      name: whoami
      provider: !KeyOf provider
      meta_launch_url: !Format ["https://%s/", !Context host]
      policy_engine_mode: any
  - model: authentik_policies.policybinding
    identifiers:
      order: 0
      target: !KeyOf app
      group: !Find [authentik_core.group, [name, authentik Admins]]
  - model: authentik_outposts.outpost
    identifiers:
      name: authentik Embedded Outpost
    attrs:
      config:
        authentik_host: !Env [AUTHENTIK_PUBLIC_URL, "https://sso.example.test/"]
      providers:
        - !KeyOf provider
"""


# --------------------------------------------------------------------------- a server in a thread


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


class Running:
    """An asyncio server on 127.0.0.1 in a background thread."""

    def __init__(self, start) -> None:  # start: coroutine function returning asyncio.Server(s)
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.Server] = []
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            result = self.loop.run_until_complete(start())
            self.servers = result if isinstance(result, list) else [result]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.port = self.servers[0].sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def request(self, method: str, target: str, host: str, headers: dict | None = None, body=None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, target, body=body, headers={"Host": host, **(headers or {})})
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()


@pytest.fixture
def bp_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "blueprints"
    (directory / "custom").mkdir(parents=True)
    return directory


def start_authentik(directory: Path) -> Running:
    async def start() -> list[asyncio.Server]:
        app = App(TrustPolicy(parse_trusted_cidrs(None)), AccessLog(interval=60), "/", directory)
        app.catalog.interval = 0.0  # re-read on every request: the tests change files
        return await serve(app, [("127.0.0.1", 0)], [], None)  # type: ignore[arg-type]

    return Running(start)


@pytest.fixture
def authentik(bp_dir: Path) -> Iterator[Running]:
    (bp_dir / "custom" / "whoami.yaml").write_text(
        blueprint(
            provider_entries("whoami", APP, "\n      skip_path_regex: ^/api/"),
            provider_entries("admins-only", "admins.example.test"),
            """
  - model: authentik_policies.policybinding
    identifiers:
      order: 0
      target: !KeyOf app-admins-only
      group: !Find [authentik_core.group, [name, authentik Admins]]
""",
            outpost_entry("whoami", "admins-only"),
        )
    )
    server = start_authentik(bp_dir)
    yield server
    server.close()


def auth(server: Running, host: str, cookie: str = "", url: str = "", **headers: str) -> Answer:
    sent = {"X-Original-URL": url or f"https://{host}/page?x=1", **headers}
    if cookie:
        sent["Cookie"] = cookie
    return server.request("GET", "/outpost.goauthentik.io/auth/nginx", host, sent)


def cookie_pair(answer: Answer) -> str:
    return answer.cookies()[0].split(";", 1)[0]


def log_in(server: Running, host: str, username: str = "akadmin") -> tuple[str, Answer]:
    """The browser's round trip: auth 401, start, authorize, login flow, authorize, callback."""
    cookie = cookie_pair(auth(server, host))
    rd = quote(f"https://{host}/page?x=1")
    start = server.request("GET", f"/outpost.goauthentik.io/start?rd={rd}", host, {"Cookie": cookie})
    assert start.status == 302, start
    authorize = urlsplit(start.location)
    assert (authorize.scheme, authorize.netloc, authorize.path) == ("https", SSO, "/application/o/authorize/")
    target = f"{authorize.path}?{authorize.query}"
    to_login = server.request("GET", target, SSO)
    assert to_login.status == 302 and to_login.location.startswith("/flows/-/default/authentication/?next=")
    flow = server.request("GET", to_login.location, SSO)
    assert flow.status == 302 and flow.location.startswith("/if/flow/default-authentication-flow/?next=")
    flow_query = urlsplit(flow.location).query
    stage = server.request(
        "POST",
        f"/api/v3/flows/executor/default-authentication-flow/?query={quote(flow_query, safe='')}",
        SSO,
        {"Content-Type": "application/json", "Origin": f"http://{SSO}"},
        json.dumps({"component": "ak-stage-identification", "uid_field": username}),
    )
    assert stage.status == 200, stage
    assert json.loads(stage.body) == {"component": "xak-flow-redirect", "to": target}
    session = cookie_pair(stage)
    assert session.startswith("authentik_session=")
    granted = server.request("GET", target, SSO, {"Cookie": session})
    return cookie, granted


def test_ping_answers_for_any_host(authentik: Running) -> None:
    for host in (APP, "unknown.example.test", SSO):
        assert authentik.request("GET", "/outpost.goauthentik.io/ping", host).status == 204


def test_host_without_served_provider_gets_authentiks_404(authentik: Running) -> None:
    answer = auth(authentik, "other.example.test")
    assert answer.status == 404 and b"Not Found" in answer.body
    assert answer.headers["Content-Type"].startswith("text/html")
    # The port is part of the host the provider names (authentik #12503).
    assert auth(authentik, f"{APP}:8443").status == 404


def test_auth_nginx_without_session_is_401_with_a_session_cookie(authentik: Running) -> None:
    answer = auth(authentik, APP)
    assert answer.status == 401 and answer.body == b"unauthorized request\n"
    (cookie,) = answer.cookies()
    name, _, rest = cookie.partition("=")
    assert name.startswith("authentik_proxy_") and len(name) == len("authentik_proxy_") + 8
    attributes = {part.strip().split("=")[0] for part in rest.split(";")[1:]}
    assert attributes == {"Path", "Max-Age", "HttpOnly", "Secure", "SameSite"}  # host-only: no Domain
    assert "SameSite=Lax" in cookie
    assert not any(key.lower().startswith("x-authentik") for key in answer.headers)


def test_auth_nginx_needs_the_original_url(authentik: Running) -> None:
    answer = authentik.request("GET", "/outpost.goauthentik.io/auth/nginx", APP)
    assert (answer.status, answer.body) == (500, b"configuration error\n")
    by_uri = auth(authentik, APP, **{"X-Original-URI": "/page"})
    assert by_uri.status == 401


def test_forwarded_host_chooses_the_provider(authentik: Running) -> None:
    assert auth(authentik, "authentik-server", **{"X-Forwarded-Host": APP}).status == 401
    assert auth(authentik, APP, **{"X-Forwarded-Host": "other.example.test"}).status == 404


def test_skip_path_regex_passes_without_identity(authentik: Running) -> None:
    answer = auth(authentik, APP, url=f"https://{APP}/api/v1/status")
    assert answer.status == 200
    assert not any(key.lower().startswith("x-authentik") for key in answer.headers)


def test_login_round_trip_gives_identity_headers(authentik: Running) -> None:
    cookie, granted = log_in(authentik, APP)
    assert granted.status == 302
    callback = urlsplit(granted.location)
    assert (callback.netloc, callback.path) == (APP, "/outpost.goauthentik.io/callback")
    assert parse_qs(callback.query)["X-authentik-auth-callback"] == ["true"]
    done = authentik.request("GET", f"{callback.path}?{callback.query}", APP, {"Cookie": cookie})
    assert (done.status, done.location) == (302, f"https://{APP}/page?x=1")
    answer = auth(authentik, APP, cookie)
    assert answer.status == 200
    assert answer.headers["X-authentik-username"] == "akadmin"
    assert answer.headers["X-authentik-groups"] == "authentik Admins"
    assert answer.headers["X-authentik-email"] == "root@localhost"
    assert answer.headers["X-authentik-name"] == "authentik Default Admin"
    assert len(answer.headers["X-authentik-uid"]) == 64
    assert answer.headers["X-authentik-meta-outpost"] == "authentik Embedded Outpost"
    assert answer.headers["X-authentik-meta-provider"] == "whoami"
    assert answer.headers["X-authentik-meta-app"] == "whoami"
    assert answer.headers["X-authentik-meta-version"].startswith("goauthentik.io/outpost/")
    # The code is single-use, and the session belongs to this provider only.
    replay = authentik.request("GET", f"{callback.path}?{callback.query}", APP, {"Cookie": cookie})
    assert replay.status == 400
    assert auth(authentik, "admins.example.test", cookie).status == 401


def test_sign_out_ends_the_session(authentik: Running) -> None:
    cookie, granted = log_in(authentik, APP)
    callback = urlsplit(granted.location)
    authentik.request("GET", f"{callback.path}?{callback.query}", APP, {"Cookie": cookie})
    assert auth(authentik, APP, cookie).status == 200
    out = authentik.request("GET", "/outpost.goauthentik.io/sign_out", APP, {"Cookie": cookie})
    assert out.status == 302 and out.location == f"https://{SSO}/application/o/whoami/end-session/"
    assert auth(authentik, APP, cookie).status == 401


def test_start_refuses_a_redirect_to_another_host(authentik: Running) -> None:
    cookie = cookie_pair(auth(authentik, APP, url=f"https://{APP}/saved"))
    start = authentik.request(
        "GET",
        "/outpost.goauthentik.io/start?rd=" + quote("https://evil.example.net/"),
        APP,
        {"Cookie": cookie},
    )
    authorize = urlsplit(start.location)
    session = cookie_pair(authentik.request(
        "POST", "/api/v3/flows/executor/default-authentication-flow/", SSO,
        {"Content-Type": "application/json"}, json.dumps({"uid_field": "akadmin"}),
    ))  # fmt: skip
    granted = authentik.request("GET", f"{authorize.path}?{authorize.query}", SSO, {"Cookie": session})
    callback = urlsplit(granted.location)
    done = authentik.request("GET", f"{callback.path}?{callback.query}", APP, {"Cookie": cookie})
    assert done.location == f"https://{APP}/saved"  # the URL saved at the 401, not evil.example.net


def test_forged_state_or_foreign_session_is_refused(authentik: Running) -> None:
    _, granted = log_in(authentik, APP)
    callback = urlsplit(granted.location)
    other = cookie_pair(auth(authentik, APP))
    wrong_session = authentik.request("GET", f"{callback.path}?{callback.query}", APP, {"Cookie": other})
    assert (wrong_session.status, wrong_session.location) == (302, f"https://{APP}")
    assert auth(authentik, APP, other).status == 401


def test_user_outside_the_bound_group_is_denied(authentik: Running) -> None:
    _, denied = log_in(authentik, "admins.example.test", username="alice")
    assert denied.status == 200 and b"<title>Access denied</title>" in denied.body
    assert not denied.location
    _, granted = log_in(authentik, "admins.example.test", username="akadmin")
    assert granted.status == 302 and "code=" in granted.location


def test_unknown_user_cannot_log_in(authentik: Running) -> None:
    answer = authentik.request(
        "POST", "/api/v3/flows/executor/default-authentication-flow/", SSO,
        {"Content-Type": "application/json"}, json.dumps({"uid_field": "mallory"}),
    )  # fmt: skip
    assert answer.status == 200 and not answer.cookies()
    assert json.loads(answer.body)["component"] == "ak-stage-identification"


# --------------------------------------------------------------------------- blueprint rules


def test_provider_not_in_the_outpost_is_not_served(bp_dir: Path) -> None:
    (bp_dir / "custom" / "a.yaml").write_text(blueprint(provider_entries("whoami", APP)))
    server = start_authentik(bp_dir)
    try:
        assert auth(server, APP).status == 404
        (bp_dir / "custom" / "b.yaml").write_text(
            blueprint(
                """
  - model: authentik_outposts.outpost
    identifiers:
      managed: goauthentik.io/outposts/embedded
    attrs:
      providers:
        - !Find [authentik_providers_proxy.proxyprovider, [name, whoami]]
"""
            )
        )
        assert auth(server, APP).status == 401  # re-read while running
    finally:
        server.close()


def test_each_blueprint_setting_outpost_providers_replaces_the_list(bp_dir: Path) -> None:
    for name in ("one", "two"):
        host = f"{name}.example.test"
        (bp_dir / "custom" / f"{name}.yaml").write_text(
            blueprint(provider_entries(name, host), outpost_entry(name))
        )
    catalog = Catalog(bp_dir)
    assert catalog.served_for_host("two.example.test") is not None
    assert catalog.served_for_host("one.example.test") is None  # two.yaml, applied last, replaced it


def test_a_bad_entry_leaves_the_whole_file_unapplied(bp_dir: Path) -> None:
    broken = (
        provider_entries("whoami", APP)
        + outpost_entry("whoami")
        + """
  - model: authentik_core.application
    identifiers:
      slug: broken
    attrs:
      provider: !KeyOf no-such-id
"""
    )
    (bp_dir / "custom" / "x.yaml").write_text(blueprint(broken))
    catalog = Catalog(bp_dir)
    assert catalog.served_for_host(APP) is None
    assert "KeyOf: failed to find entry with `id` of `no-such-id`" in next(iter(catalog.errors.values()))


def test_blueprints_are_read_recursively_and_only_yaml(bp_dir: Path) -> None:
    nested = bp_dir / "custom" / "apps" / "deep"
    nested.mkdir(parents=True)
    (nested / "whoami.yaml").write_text(blueprint(provider_entries("whoami", APP), outpost_entry("whoami")))
    (bp_dir / "custom" / "ignored.yml").write_text(blueprint(provider_entries("yml", "yml.example.test")))
    catalog = Catalog(bp_dir)
    assert catalog.served_for_host(APP) is not None
    assert "yml" not in {p.name for p in catalog.providers.values()}


def test_tags_resolve_env_context_format_and_if() -> None:
    document = blueprints.load_text(
        """
version: 1
context: {sub: app}
entries:
  - model: authentik_core.group
    identifiers:
      name: !Format ["%s-%s", !Context sub, !Env [SUFFIX, none]]
    attrs:
      is_superuser: !If [!Env MISSING, true, false]
"""
    )
    state = blueprints.apply(blueprints.State.fresh(), document, {"SUFFIX": "users"})
    assert state.get("authentik_core.group", "app-users") == {"name": "app-users", "is_superuser": False}


def test_loader_accepts_every_authentik_tag() -> None:
    text = "version: 1\nentries: []\nx: [" + ", ".join(f"!{tag} [a]" for tag in blueprints.TAGS) + "]\n"
    assert [tag.name for tag in blueprints.load_text(text)["x"]] == list(blueprints.TAGS)


def test_authentik_host_unset_sends_the_browser_to_the_local_api(bp_dir: Path) -> None:
    (bp_dir / "custom" / "a.yaml").write_text(
        blueprint(provider_entries("whoami", APP), outpost_entry("whoami", authentik_host='""'))
    )
    server = start_authentik(bp_dir)
    try:
        start = server.request("GET", "/outpost.goauthentik.io/start", APP)
        assert start.location.startswith("http://localhost:9000/application/o/authorize/")
        server.request("GET", "/if/admin/", SSO, {"X-Forwarded-Proto": "https"})  # the admin UI fills it in
        start = server.request("GET", "/outpost.goauthentik.io/start", APP)
        assert start.location.startswith(f"https://{SSO}/application/o/authorize/")
    finally:
        server.close()


# --------------------------------------------------------------------------- schema validation


def test_docs_style_forward_auth_blueprint_validates(tmp_path: Path) -> None:
    path = tmp_path / "whoami.yaml"
    path.write_text(DOCS_EXAMPLE)
    assert validate_blueprint(path) == []
    assert validate_blueprint(DOCS_EXAMPLE, {"AUTHENTIK_PUBLIC_URL": "https://sso.example.org/"}) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("mode: forward_single", "mode: forward-single"), "'forward-single' is not one of"),
        (("name: whoami\n    attrs:\n      mode", "name: ''\n    attrs:\n      mode"), "should be non-empty"),
        (("provider: !KeyOf provider", "provider: !KeyOf provder"), "KeyOf: failed to find entry"),
        (("[name, authentik Admins]", "[name, no such group]"), "One of 'policy', 'group' or 'user'"),
        (("slug, default-provider", "slug, no-provider"), "authorization_flow: This field is required."),
        (("version: 1", "version: 2"), "unsupported blueprint version"),
        (("model: authentik_core.application", "model: authentik_core.applicaton"), "not covered by"),
    ],
)
def test_broken_blueprints_are_reported(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in DOCS_EXAMPLE
    problems = validate_blueprint(DOCS_EXAMPLE.replace(old, new, 1))
    assert any(expected in problem for problem in problems), problems


# --------------------------------------------------------------------------- echo app


@pytest.fixture
def echo_app() -> Iterator[Running]:
    async def start() -> asyncio.Server:
        return await serve_echo(0)

    server = Running(start)
    yield server
    server.close()


def test_echo_app_answers_with_the_request(echo_app: Running) -> None:
    answer = echo_app.request("POST", "/some/path?a=1&b=2", APP, {"X-authentik-username": "akadmin"}, b"body")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    seen = json.loads(answer.body)
    assert seen["method"] == "POST" and seen["path"] == "/some/path" and seen["query"] == "a=1&b=2"
    assert seen["headers"]["host"] == APP and seen["headers"]["x-authentik-username"] == "akadmin"
    assert seen["client"] == "127.0.0.1"


def test_echo_app_echoes_websocket_messages(echo_app: Running) -> None:
    with socket.create_connection(("127.0.0.1", echo_app.port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1024)
        assert head.startswith(b"HTTP/1.1 101") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        payload, key = b"hello", b"\x01\x02\x03\x04"
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + key + masked)
        frame = head.split(b"\r\n\r\n", 1)[1]
        while len(frame) < 2 + len(payload):
            frame += sock.recv(1024)
        assert frame[: 2 + len(payload)] == b"\x81\x05hello"


def test_group_made_by_a_blueprint_admits_its_members(bp_dir: Path) -> None:
    binding = """
  - model: authentik_core.group
    id: family
    identifiers:
      name: family
    attrs:
      users:
        - !Find [authentik_core.user, [username, alice]]
  - model: authentik_policies.policybinding
    identifiers:
      order: 0
      target: !KeyOf app-whoami
      group: !KeyOf family
"""
    (bp_dir / "custom" / "a.yaml").write_text(
        blueprint(provider_entries("whoami", APP), binding, outpost_entry("whoami"))
    )
    server = start_authentik(bp_dir)
    try:
        _, granted = log_in(server, APP, username="alice")
        assert granted.status == 302 and "code=" in granted.location
        _, denied = log_in(server, APP, username="akadmin")
        assert b"Access denied" in denied.body
    finally:
        server.close()


def test_state_created_leaves_an_existing_object_alone() -> None:
    document = blueprints.load_text(
        """
version: 1
entries:
  - model: authentik_core.group
    state: created
    identifiers: {name: authentik Admins}
    attrs: {users: []}
  - model: authentik_core.group
    state: created
    identifiers: {name: media}
"""
    )
    state = blueprints.apply(blueprints.State.fresh(), document, {})
    assert state.get("authentik_core.group", "authentik Admins")["users"] == ["akadmin"]
    assert state.get("authentik_core.group", "media") == {"name": "media"}


def test_conditions_decide_whether_an_entry_is_applied() -> None:
    document = blueprints.load_text(
        """
version: 1
entries:
  - model: authentik_core.group
    conditions: [!Condition [AND, !Env [WANT, ""], true]]
    identifiers: {name: wanted}
  - model: authentik_core.group
    conditions: [!Condition [NOR, !Env [WANT, ""]]]
    identifiers: {name: unwanted}
"""
    )
    state = blueprints.apply(blueprints.State.fresh(), document, {"WANT": "yes"})
    assert state.get("authentik_core.group", "wanted") is not None
    assert state.get("authentik_core.group", "unwanted") is None
