"""Issue 15 with a real browser: headless chromium through forward auth's cookie round trip.

ONE stack with one app, `web.example.test`, in front of the echo app stand-in. chromium resolves the
app's host and authentik's (`sso.example.test`) to 127.0.0.1 and opens the published HTTPS port,
as a browser on the LAN does. Without a session nginx sends it to the embedded outpost's `start`,
which leads to authentik's login on authentik's own host; the stand-in's flow page signs in (a
same-origin fetch POST) and goes on to the authorization, whose code comes back to the outpost's
callback on the app's host: that answer sets the `authentik_proxy_*` cookie, and the browser returns
to the page it asked for. Everything chromium decided itself (which cookie to keep for which host,
which redirects to follow) is read back from its profile after it exits.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers.chromium import (
    FLAGS,
    block_scripts,
    chromium,
    cookies,
    resolver_rules,
    run_chromium,
    visited,
)
from tests.helpers.forwardauth import ECHO_UPSTREAM, Browser, serve_echo_app
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, Stack, running_stack

pytestmark = pytest.mark.docker

WEB = "web.example.test"
APPS = {"web": {"host": WEB, "upstream": ECHO_UPSTREAM}}
PAGE = "/some/path?x=1"
FLOW_PAGE = "/if/flow/default-authentication-flow/"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    chromium()
    with running_stack(tmp_path_factory.mktemp("fabrowser"), standin_images, {"apps": APPS}) as stack:
        serve_echo_app(stack, [WEB])
        stack.up()
        wait_for(
            lambda: _login_in_place(stack),
            f"{WEB} sending browsers to authentik's authorization",
            timeout=180,
            context=lambda: stack.logs("nginx")[-2000:] + stack.logs("server")[-2000:],
        )
        yield stack


def _login_in_place(stack: Stack) -> bool:
    """Whether the app's host leads an anonymous browser to authentik's authorization: nginx serves
    the host (a placeholder certificate is enough for chromium here) and the outpost knows its
    provider. pebble's certificates are not waited for."""
    browser = Browser(stack)
    hops = browser.walk(_url(stack, WEB, "/"))
    return any("/application/o/authorize/" in url for url, _ in hops)


def _url(stack: Stack, host: str, target: str) -> str:
    return f"https://{host}:{stack.https_port}{target}"


def _open(url: str, profile: Path) -> str:
    """chromium with `profile` opens `url`, both test hosts resolving to loopback; its final DOM."""
    return run_chromium(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", resolver_rules([WEB, DOMAIN]), url]
    )


def _echo(dom: str) -> dict[str, Any] | None:
    """The echo app's JSON as chromium shows it (a <pre> of the document), or None for another page."""
    shown = re.search(r"<pre[^>]*>(.*?)</pre>", dom, re.S)
    try:
        seen = json.loads(html.unescape(shown.group(1))) if shown else None
    except ValueError:
        return None
    return seen if isinstance(seen, dict) and "headers" in seen else None


@dataclass(frozen=True)
class Visit:
    """One chromium run: the app's answer it ended on, and the URLs it loaded on the way."""

    echo: dict[str, Any]
    urls: list[str]


def _visit_app(url: str, profile: Path) -> Visit:
    """Open `url` until chromium ends on the app. The login's fetch and redirects can outlast the
    virtual time budget on a loaded machine: such a run is repeated, with the same profile. A
    redirect loop (a cookie the browser never gets back) is final."""
    before = len(visited(profile))

    def ended() -> Visit | str:
        dom = _open(url, profile)
        echo = _echo(dom)
        if echo is not None:
            return Visit(echo, visited(profile)[before:])
        error = re.search(r'"errorCode":"(\w+)"', dom)
        if error and error.group(1) == "ERR_TOO_MANY_REDIRECTS":
            return error.group(1)
        shown = error.group(1) if error else dom[-1500:]
        raise AssertionError(f"chromium did not end on the app: {shown}, after {visited(profile)[-4:]}")

    outcome = wait_for(ended, f"chromium opening {url}", timeout=120, interval=1)
    assert isinstance(outcome, Visit), f"{outcome}: the way it went: {visited(profile)[before:][:12]}"
    return outcome


@pytest.fixture(scope="module")
def signed_in(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Visit]:
    """A fresh profile's first visit of the app's page: the whole login round trip."""
    profile = tmp_path_factory.mktemp("profile")
    return profile, _visit_app(_url(stack, WEB, PAGE), profile)


def test_the_browser_signs_in_at_authentik_and_lands_on_the_page_it_asked_for(
    stack: Stack, signed_in: tuple[Path, Visit]
) -> None:
    _, visit = signed_in
    assert (visit.echo["path"], visit.echo["query"]) == ("/some/path", "x=1"), visit.echo
    assert visit.echo["headers"]["x-authentik-username"] == "akadmin", visit.echo["headers"]
    assert visit.echo["headers"]["host"] == f"{WEB}:{stack.https_port}", visit.echo["headers"]
    # The way there, as chromium recorded it: the outpost's start on the app's host, authentik's
    # login and authorization on authentik's own host, the outpost's callback on the app's host.
    sso, app = f"{DOMAIN}:{stack.https_port}", f"{WEB}:{stack.https_port}"
    route = [(urlsplit(u).netloc, urlsplit(u).path) for u in visit.urls]
    assert route[0] == (app, "/some/path"), visit.urls
    assert (app, "/outpost.goauthentik.io/start") in route, visit.urls
    assert (sso, FLOW_PAGE) in route, visit.urls
    assert (sso, "/application/o/authorize/") in route, visit.urls
    # The outpost's callback on the app's host comes after the login. (A run cut short by the virtual
    # time budget and repeated may not have written that redirect to its history; the identity
    # header above shows the code exchange happened.)
    if (app, "/outpost.goauthentik.io/callback") in route:
        callback = route.index((app, "/outpost.goauthentik.io/callback"))
        assert route.index((sso, FLOW_PAGE)) < callback, visit.urls
    assert visit.urls[-1] == _url(stack, WEB, PAGE), visit.urls


def test_the_outposts_cookie_is_kept_for_the_app_host_only(signed_in: tuple[Path, Visit]) -> None:
    profile, _ = signed_in
    kept = [c for c in cookies(profile) if str(c["name"]).startswith("authentik_proxy_")]
    # host_key without a leading dot: a host-only cookie, sent to web.example.test and nowhere else.
    assert [(c["host_key"], c["path"]) for c in kept] == [(WEB, "/")], cookies(profile)
    assert all(c["secure"] and c["httponly"] and c["persistent"] for c in kept), kept


def test_with_the_cookie_the_next_visit_goes_straight_to_the_app(
    stack: Stack, signed_in: tuple[Path, Visit]
) -> None:
    profile, _ = signed_in
    visit = _visit_app(_url(stack, WEB, "/again?y=2"), profile)
    assert (visit.echo["path"], visit.echo["query"]) == ("/again", "y=2"), visit.echo
    assert visit.echo["headers"]["x-authentik-username"] == "akadmin", visit.echo["headers"]
    # One load, no redirect: neither the outpost's start nor authentik's host on the way.
    assert visit.urls == [_url(stack, WEB, "/again?y=2")], visit.urls


def test_without_the_cookie_the_browser_ends_on_authentiks_login_not_the_app(
    stack: Stack, tmp_path: Path
) -> None:
    """A fresh profile (no cookie at all) whose user does not sign in: scripts blocked, the stand-in's
    login page waits as authentik's does for a person. The app's page is never shown."""
    block_scripts(tmp_path)
    url = _url(stack, WEB, "/private/page?z=3")

    def on_a_page() -> str:
        dom = _open(url, tmp_path)
        if "<html" not in dom:
            raise AssertionError(f"chromium showed no page: {dom[-1500:]}")
        return dom

    dom = wait_for(on_a_page, f"chromium opening {url}", timeout=120, interval=1)
    assert _echo(dom) is None, dom[-1500:]
    assert "<ak-flow-executor" in dom, dom[-1500:]
    final = urlsplit(visited(tmp_path)[-1])
    assert (final.netloc, final.path) == (f"{DOMAIN}:{stack.https_port}", FLOW_PAGE), visited(tmp_path)
    assert not [c for c in cookies(tmp_path) if str(c["name"]).startswith("authentik_session")]
