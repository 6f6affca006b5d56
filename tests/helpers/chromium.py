"""Headless chromium as a test's browser: how it is run, and what its profile recorded.

Debian's chromium runs headless with `--dump-dom` (the page's DOM on stdout once the virtual time
budget is spent). Its resolver is given only the test's host names (`MAP * ~NOTFOUND` for the rest),
so it reaches nothing but loopback. After it exits, its profile (`--user-data-dir`) holds what it
did: every navigation with its redirects (`Default/History`) and the cookies it keeps
(`Default/Cookies`); both are SQLite databases, read here without chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from tests.helpers.requirements import require

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--ignore-certificate-errors",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--virtual-time-budget=10000",
    "--dump-dom",
)


def chromium() -> str:
    """chromium's path; a docker test without it is skipped locally and fails in CI (`require`)."""
    path = shutil.which("chromium")
    require(path is not None, "chromium is not installed (apt-get install chromium)")
    assert path is not None
    return path


def resolver_rules(names: list[str], address: str = "127.0.0.1") -> str:
    """`--host-resolver-rules` sending each of `names` to `address` and every other name nowhere."""
    rules = [f"MAP {name} {address}" for name in names]
    return "--host-resolver-rules=" + ",".join([*rules, "MAP * ~NOTFOUND"])


def run_chromium(command: list[str], timeout: float = 60) -> str:
    """chromium's --dump-dom output; on a timeout its whole process group (renderer, GPU and
    network helpers included) is killed, so no browser outlives the test."""
    browser = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        dom, errors = browser.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.communicate()
        raise
    if browser.returncode != 0:
        raise AssertionError(f"chromium exited with {browser.returncode}: {errors[-2000:]}")
    return dom


def block_scripts(profile: Path) -> None:
    """A new profile whose pages run no JavaScript (the user's content setting "Don't allow sites to
    use JavaScript"): a page that acts on its own by script, such as a login form submitting
    itself, then waits as it would for a person."""
    preferences = profile / "Default" / "Preferences"
    preferences.parent.mkdir(parents=True, exist_ok=True)
    preferences.write_text(json.dumps({"profile": {"default_content_setting_values": {"javascript": 2}}}))


def _query(profile: Path, database: str, sql: str) -> list[tuple]:
    path = profile / "Default" / database
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def visited(profile: Path) -> list[str]:
    """Every URL the profile's browser loaded, oldest first, each redirect of a chain included."""
    sql = "SELECT urls.url FROM visits JOIN urls ON urls.id = visits.url ORDER BY visits.id"
    return [url for (url,) in _query(profile, "History", sql)]


def cookies(profile: Path) -> list[dict[str, object]]:
    """The cookies the profile keeps: name, host_key (a leading dot = a domain cookie, none =
    host-only), path, secure, httponly, persistent."""
    sql = "SELECT name, host_key, path, is_secure, is_httponly, is_persistent FROM cookies"
    keys = ("name", "host_key", "path", "secure", "httponly", "persistent")
    return [dict(zip(keys, row, strict=True)) for row in _query(profile, "Cookies", sql)]
