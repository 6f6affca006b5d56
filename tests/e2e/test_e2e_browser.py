"""Issue 12 with a real browser: headless chromium signs in behind a router's port forward.

ONE stack with `public_url=https://DOMAIN` and nginx published on a random high port. socat on
127.0.0.2:443 plays the router that forwards public port 443 to the published port; chromium
resolves DOMAIN to it (or, for a browser on the LAN, to 127.0.0.1 and names the published port).
The stand-in's flow page submits the login stage with a same-origin fetch POST, so chromium itself
chooses the Host and Origin that authentik's CSRF check compares, and writes the answer into the
DOM. The browser's resolver knows DOMAIN only; everything else fails to resolve, so it reaches
nothing but loopback.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import wait_until_served
from tests.helpers.chromium import FLAGS, chromium, resolver_rules, run_chromium
from tests.helpers.polling import wait_for
from tests.helpers.requirements import require
from tests.helpers.stack import DOMAIN, Stack, running_stack

pytestmark = pytest.mark.docker

ROUTER_ADDRESS = "127.0.0.2"
LOGIN_FLOW_PAGE = "/if/flow/default-authentication-flow/?next=%2Fif%2Fuser%2F"


@pytest.fixture(scope="module")
def router_stack(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """public_url without a port, nginx on a high host port: what a router's port forward needs."""
    chromium()
    require(shutil.which("socat") is not None, "socat is not installed (apt-get install socat)")
    data = {"public_url": f"https://{DOMAIN}"}
    with running_stack(tmp_path_factory.mktemp("browser"), standin_images, data) as stack:
        stack.up()
        wait_until_served(stack)
        yield stack


def _listening(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=2):
        return True


@pytest.fixture()
def port_forward(router_stack: Stack) -> Iterator[str]:
    """A router forwarding ROUTER_ADDRESS:443 to the published HTTPS port; its address."""
    router = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:443,bind={ROUTER_ADDRESS},reuseaddr,fork",
            f"TCP:127.0.0.1:{router_stack.https_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: router.poll() is None and _listening(ROUTER_ADDRESS, 443),
            f"socat listening on {ROUTER_ADDRESS}:443",
            timeout=15,
            context=lambda: router.stderr.read().decode() if router.poll() is not None else "",
        )
        yield ROUTER_ADDRESS
    finally:
        router.kill()
        router.wait(timeout=10)


def _sign_in(url: str, address: str, profile: Path) -> tuple[str, str]:
    """Load `url` in chromium with DOMAIN resolving to `address`; the flow page's address and the
    login POST's outcome ("<status> <body>") as its script wrote them into the DOM."""
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", resolver_rules([DOMAIN], address), url]

    def signed_in() -> tuple[str, str] | None:
        dom = run_chromium(command)
        location = re.search(r'<pre id="location">(.*?)</pre>', dom, re.S)
        outcome = re.search(r'<pre id="outcome">(.*?)</pre>', dom, re.S)
        if location is None or outcome is None or not outcome.group(1):
            raise AssertionError(f"the flow page's script has not finished: {dom[-2000:]}")
        if outcome.group(1).startswith("error TypeError: Failed to fetch"):
            # chromium cancels a fetch still pending when the virtual time budget runs out
            raise AssertionError(f"the login POST did not complete: {outcome.group(1)}")
        return location.group(1), outcome.group(1)

    # Under load the fetch can outlast the virtual time budget: a DOM without an outcome, or with the
    # cancelled fetch's error, is retried; an HTTP answer (a 403 from the CSRF check) is not.
    return wait_for(signed_in, f"chromium signing in at {url}", timeout=90, interval=1)


def test_browser_signs_in_through_the_router(port_forward: str, tmp_path: Path) -> None:
    """Through the forward the browser names DOMAIN without a port: the redirects keep it so, and
    the login POST's Origin matches what authentik sees."""
    location, outcome = _sign_in(f"https://{DOMAIN}/", port_forward, tmp_path)
    assert location == f"https://{DOMAIN}{LOGIN_FLOW_PAGE}", location
    assert outcome.startswith("200 "), outcome
    assert '"xak-flow-redirect"' in outcome, outcome


def test_browser_signs_in_on_the_published_port(router_stack: Stack, tmp_path: Path) -> None:
    """A browser on the LAN opens the published port itself: the URL keeps the port, and the POST
    passes too."""
    origin = f"https://{DOMAIN}:{router_stack.https_port}"
    location, outcome = _sign_in(f"{origin}/", "127.0.0.1", tmp_path)
    assert location == f"{origin}{LOGIN_FLOW_PAGE}", location
    assert outcome.startswith("200 "), outcome
    assert '"xak-flow-redirect"' in outcome, outcome
