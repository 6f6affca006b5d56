"""Issue 15 without Docker: the `apps` answer's rule, the files it renders, and `scaffold app` refusals.

- the rule (answer_rules.parse_apps): every bad app refused with what is wrong and the fix, and copier's
  validator saying exactly what the rule says, on generated answers;
- what the answer renders: the blueprint (checked against authentik's published schema and the rules
  a fresh authentik applies), certbot's host list, nginx's file per app (written by the hook) and its
  identity-header handling;
- `scaffold app add` refusing bad input with nothing written, `copier update --data apps=...` and
  `scaffold app remove` deleting the file of a removed app.
The same files on a running stack: tests/e2e/test_e2e_forward_auth.py.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaffold.answer_rules import App, parse_apps, problem_with
from scaffold.appfiles import render_app, write_app_files
from tests.helpers.blueprints import validate_blueprint
from tests.helpers.copierenv import copier_jinja_env
from tests.helpers.projects import new_project
from tests.helpers.stack import REPO_ROOT
from tests.helpers.templaterepo import make_template_repo

DOMAIN = "sso.example.test"
GOOD = {"web": {"host": "web.example.test", "upstream": "http://echo:8080"}}
#: Every identity header authentik's outpost documents (snippets/app-identity*.conf clear them all).
IDENTITY_HEADERS = [
    *(f"x-authentik-{n}" for n in ("username", "groups", "entitlements", "email", "name", "uid", "jwt")),
    *(f"x-authentik-meta-{n}" for n in ("jwks", "outpost", "provider", "app", "version")),
]


def app(**settings: object) -> dict[str, object]:
    return {"web": {"host": "web.example.test", "upstream": "http://echo:8080", **settings}}


#: (answer, words the message must contain)
BAD_APPS = [
    ("jellyfin", "is not a mapping of app names to settings"),
    (["web"], "is not a mapping of app names to settings"),
    ({"My App": GOOD["web"]}, "is not a valid file name"),
    ({"../x": GOOD["web"]}, "is not a valid file name"),
    ({"a/b": GOOD["web"]}, "is not a valid file name"),
    ({"-x": GOOD["web"]}, "is not a valid file name"),
    ({"x" * 51: GOOD["web"]}, "is not a valid file name"),
    ({"web": "web.example.test"}, "not a mapping"),
    (app(port=80), "unknown settings: port"),
    (app(host=DOMAIN), "is authentik's own domain"),
    (app(host="Web.example.test"), "upper-case"),
    (app(host="https://web.example.test"), "has a scheme"),
    (app(host="web.example.test:8443"), "has a port"),
    (app(host="*.example.test"), "is a wildcard"),
    (app(host="web"), "not a valid host name"),
    (app(host=None), "is required"),
    (
        {**app(), "other": {"host": "web.example.test", "upstream": "http://b:1"}},
        "have the same host web.example.test",
    ),
    (app(upstream="http://echo"), "is not http(s)://HOST:PORT"),
    (app(upstream="echo:8080"), "is not http(s)://HOST:PORT"),
    (app(upstream="ftp://echo:21"), "is not http(s)://HOST:PORT"),
    (app(upstream="http://echo:8080/path"), "is not http(s)://HOST:PORT"),
    (app(upstream="http://echo:0"), "is not http(s)://HOST:PORT"),
    (app(upstream="http://echo:70000"), "is not http(s)://HOST:PORT"),
    (app(upstream="http://ec ho:80"), "is not http(s)://HOST:PORT"),
    (app(upstream="http://echo:80;"), "is not http(s)://HOST:PORT"),
    (app(upstream="http://[1::2::3]:80"), "no valid IPv6 address"),
    (app(upstream=8080), "is not http(s)://HOST:PORT"),
    (app(bypass=["api/"]), "is not a path"),
    (app(bypass=["/"]), "is not a path"),
    (app(bypass=["/a b/"]), "is not a path"),
    (app(bypass=["/a;b"]), "is not a path"),
    (app(bypass=["/a{b}"]), "is not a path"),
    (app(bypass=["/api/../admin"]), "is not a path"),
    (app(bypass=["/api//x"]), "is not a path"),
    (app(bypass=["*"]), "is not a path"),
    (app(bypass=[7]), "is not a path"),
    (app(bypass={"path": "/api/"}), "is not a list of paths"),
    (app(bypass=["/outpost.goauthentik.io/start"]), "belongs to the stack"),
    (app(bypass=["/.well-known/acme-challenge/"]), "belongs to the stack"),
    (app(group=" admins"), "is not an authentik group name"),
    (app(group="admins\nx"), "is not an authentik group name"),
    (app(group=["admins"]), "is not an authentik group name"),
    (app(websockets="yes"), "use true or false"),
    (app(identity_headers=1), "use true or false"),
]


def test_apps_are_refused_on_swarm_until_the_stack_file_carries_them():
    message = problem_with("apps", GOOD, domain=DOMAIN, target="swarm")
    assert "not supported with target swarm" in message and ": " in message
    assert problem_with("apps", {}, domain=DOMAIN, target="swarm") == ""


@pytest.mark.parametrize(("answer", "words"), BAD_APPS)
def test_a_bad_app_is_refused_with_what_is_wrong_and_the_fix(answer, words):
    message = problem_with("apps", answer, domain=DOMAIN)
    assert words in message, message
    assert ": " in message, f"no fix in {message!r}"


def test_good_apps_are_read_with_their_defaults_in_name_order():
    answer = {
        "zeta": {"host": "z.other.example", "upstream": "https://192.0.2.10:8443", "group": "Media people"},
        "alpha": {
            "host": "a.example.test",
            "upstream": "http://[2001:db8::20]:8096",
            "websockets": False,
            "bypass": ["/api/", "/rest", "/a.b~c_d-e/"],
            "identity_headers": False,
        },
    }
    assert problem_with("apps", answer, domain=DOMAIN) == ""
    assert parse_apps(answer, domain=DOMAIN) == (
        App("alpha", "a.example.test", "http://[2001:db8::20]:8096", False,
            ("/api/", "/rest", "/a.b~c_d-e/"), False),
        App("zeta", "z.other.example", "https://192.0.2.10:8443", group="Media people"),
    )  # fmt: skip
    for empty in (None, "", {}):
        assert parse_apps(empty, domain=DOMAIN) == ()


_TEXT_FIELDS = {
    "host": "web.example.test",
    "upstream": "http://echo:8080",
    "bypass": "/api/",
    "group": "admins",
}


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(sorted(_TEXT_FIELDS)),
    control=st.sampled_from(["\n", "\r", "\x00", "\t", "\x1b", "\x85", "\u2028"]),
    at=st.integers(0, 20),
)
def test_no_app_setting_lets_a_line_break_or_control_character_through(key, control, at):
    valid = _TEXT_FIELDS[key]
    spoiled = valid[:at] + control + valid[at:]
    settings_ = {**GOOD["web"], key: [spoiled] if key == "bypass" else spoiled}
    assert problem_with("apps", {"web": settings_}, domain=DOMAIN), repr(spoiled)


# --- copier's validator and the rendered files ----------------------------------------------------


@pytest.fixture(scope="module")
def jinja_env(tmp_path_factory) -> Iterator:
    """copier's environment for this template (a clone of the working tree, dirty changes included)."""
    with copier_jinja_env(tmp_path_factory.mktemp("dst")) as env:
        yield env


@functools.cache
def _template_text(relative: str) -> str:
    return (REPO_ROOT / "template" / relative).read_text()


def _render(jinja_env, relative: str, answers: dict) -> str:
    return jinja_env.from_string(_template_text(relative)).render(answers)


_NAME = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
_HOST = st.from_regex(r"[a-z][a-z0-9-]{0,6}\.example\.(test|org)", fullmatch=True)
_APP = st.fixed_dictionaries(
    {
        "host": _HOST,
        "upstream": st.sampled_from(["http://echo:8080", "https://192.0.2.1:443", "http://[::1]:80"]),
    },
    optional={
        "websockets": st.booleans(),
        "identity_headers": st.booleans(),
        "bypass": st.lists(st.from_regex(r"(/[a-z0-9._~-]{1,5}){1,3}/?", fullmatch=True), max_size=2),
        "group": st.sampled_from(["admins", "Media people", 'ü "quoted" #x: y']),
    },
)
VALID_APPS = st.dictionaries(_NAME, _APP, max_size=4).filter(
    lambda apps: problem_with("apps", apps, domain=DOMAIN) == ""
)
ANY_APPS = st.one_of(
    VALID_APPS,
    st.dictionaries(
        _NAME, st.fixed_dictionaries({"host": st.text(max_size=12), "upstream": st.text(max_size=12)})
    ),
    st.text(max_size=10),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(apps=ANY_APPS)
def test_copier_s_validator_says_what_the_rule_says(jinja_env, apps):
    validator = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())["apps"]["validator"]
    for target in ("compose", "swarm"):
        rendered = jinja_env.from_string(validator).render(apps=apps, domain=DOMAIN, target=target).strip()
        assert rendered == problem_with("apps", apps, domain=DOMAIN, target=target).strip()


BLUEPRINT = "blueprints/{% if apps %}scaffold-apps.yaml{% endif %}.jinja"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(apps=VALID_APPS.filter(bool), port=st.sampled_from(["", ":18443"]))
def test_the_blueprint_passes_authentik_s_schema_and_names_every_app(jinja_env, apps, port):
    answers = {
        "apps": apps, "domain": DOMAIN, "public_url": f"https://{DOMAIN}{port}", "web_path": "/",
        "acme_challenge": "http", "acme_wildcard": False,
    }  # fmt: skip
    text = _render(jinja_env, BLUEPRINT, answers)
    assert validate_blueprint(text) == []
    from tests.standins.authentik.blueprints import load_text

    entries = load_text(text)["entries"]
    providers = [e for e in entries if e["model"] == "authentik_providers_proxy.proxyprovider"]
    hosts = {e["attrs"]["external_host"] for e in providers}
    assert hosts == {f"https://{spec['host']}{port}" for spec in apps.values()}
    assert all(e["attrs"]["mode"] == "forward_single" for e in providers)
    outpost = [e for e in entries if e["model"] == "authentik_outposts.outpost"]
    assert len(outpost) == 1 and len(outpost[0]["attrs"]["providers"]) == len(apps)
    assert outpost[0]["attrs"]["config"]["authentik_host"] == f"https://{DOMAIN}{port}/"
    bindings = [e for e in entries if e["model"] == "authentik_policies.policybinding"]
    assert len(bindings) == sum(1 for spec in apps.values() if spec.get("group"))

    certbot_hosts = _render(jinja_env, "certbot/hosts.jinja", answers)
    listed = [line for line in certbot_hosts.splitlines() if line and not line.startswith("#")]
    assert sorted(listed) == sorted(spec["host"] for spec in apps.values())


def test_app_hosts_the_wildcard_names_use_it_and_get_no_certificate_of_their_own(jinja_env):
    """Issue 17 meets issue 15: with DNS-01 and acme_wildcard, *.DOMAIN covers an app host one label
    under DOMAIN (nginx serves it authentik's certificate, certbot keeps no lineage for it); a host
    deeper down or under another domain keeps its own certificate."""
    apps = {
        "web": {"host": f"web.{DOMAIN}", "upstream": "http://echo:8080"},
        "deep": {"host": f"a.b.{DOMAIN}", "upstream": "http://echo:8080"},
        "other": {"host": "other.example.org", "upstream": "http://echo:8080"},
    }
    for wildcard, own in (
        (True, {f"a.b.{DOMAIN}", "other.example.org"}),
        (False, {a["host"] for a in apps.values()}),
    ):
        answers = {"apps": apps, "domain": DOMAIN, "acme_challenge": "dns", "acme_wildcard": wildcard}
        listed = _render(jinja_env, "certbot/hosts.jinja", answers).splitlines()
        assert {line for line in listed if line and not line.startswith("#")} == own
        for app in parse_apps(apps, domain=DOMAIN):
            conf = render_app(app, {**answers, "public_url": f"https://{DOMAIN}"})
            path = "served" if app.host not in own else f"hosts/{app.host}"
            assert f"ssl_certificate     /var/cache/nginx/scaffold/{path}/fullchain.pem;" in conf, conf


def _statements(text: str) -> list[list[str]]:
    words = re.findall(r"[^\s;{}]+|[;{}]", re.sub(r"#[^\n]*", "", text))
    statements, current = [], []
    for word in words:
        if word in ";{}":
            if current:
                statements.append(current)
            current = []
        else:
            current.append(word)
    return statements


@settings(max_examples=40, deadline=None)
@given(apps=VALID_APPS.filter(bool))
def test_nginx_s_file_per_app_clears_every_client_identity_header(apps):
    snippets = REPO_ROOT / "template" / "nginx" / "snippets"
    identity = {
        s[1].lower(): s[2]
        for s in _statements((snippets / "app-identity.conf").read_text())
        if s[0] == "proxy_set_header"
    }
    cleared = {
        s[1].lower(): s[2]
        for s in _statements((snippets / "app-identity-cleared.conf").read_text())
        if s[0] == "proxy_set_header"
    }
    assert sorted(identity) == sorted(cleared) == sorted(IDENTITY_HEADERS)
    assert set(cleared.values()) == {'""'}
    assert all(value == '""' or value.startswith("$authentik_") for value in identity.values())
    for parsed in parse_apps(apps, domain=DOMAIN):
        text = render_app(parsed, {"domain": DOMAIN, "public_url": f"https://{DOMAIN}", "apps": apps})
        statements = _statements(text)
        assert ["server_name", parsed.host] in statements
        includes = [s[1] for s in statements if s[0] == "include"]
        # Every location that reaches the app has one of the two identity snippets.
        reaching = text.count("proxy_pass $scaffold_app_upstream;")
        assert reaching == 1 + len(parsed.bypass)
        assert (
            includes.count("/etc/nginx/snippets/app-identity.conf")
            + includes.count("/etc/nginx/snippets/app-identity-cleared.conf")
            == reaching
        )
        for path in parsed.bypass:
            assert ["location", "^~", path] in statements
        assert f"/etc/nginx/custom/apps/{parsed.name}.d/*.conf" in includes


# --- Files on disk, and the commands ----------------------------------------------------------------


def test_the_file_of_a_removed_app_is_deleted_and_a_user_s_file_is_kept(tmp_path: Path):
    two = {**GOOD, "live": {"host": "live.example.test", "upstream": "http://echo:8080"}}
    answers = {"domain": DOMAIN, "public_url": f"https://{DOMAIN}"}
    assert sorted(write_app_files(tmp_path, {**answers, "apps": two})) == [
        "nginx/conf.d/apps/live.conf",
        "nginx/conf.d/apps/web.conf",
    ]
    mine = tmp_path / "nginx/conf.d/apps/mine.conf"
    mine.write_text("# my own server block\n")
    assert write_app_files(tmp_path, {**answers, "apps": two}) == []  # nothing changed
    assert write_app_files(tmp_path, {**answers, "apps": GOOD}) == ["nginx/conf.d/apps/live.conf"]
    assert sorted(p.name for p in (tmp_path / "nginx/conf.d/apps").iterdir()) == ["mine.conf", "web.conf"]


GIT_IDENTITY = {
    n: v for k in ("AUTHOR", "COMMITTER") for n, v in ((f"GIT_{k}_NAME", "t"), (f"GIT_{k}_EMAIL", "t@t.test"))
}


def _scaffold(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`scaffold app COMMAND [NAME] DEST ...`: DEST right after the positional arguments."""
    count = 2 if args[1] == "list" else 3
    return subprocess.run(
        [sys.executable, "-m", "scaffold", *args[:count], str(project), *args[count:]],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **GIT_IDENTITY},
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A stack made by `scaffold new` from a tagged copy of this checkout (v1.0.0), with one app."""
    import json

    root = tmp_path_factory.mktemp("apps")
    template = make_template_repo(root / "template")
    return new_project(root / "stack", template, f"apps={json.dumps(GOOD)}")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["web2", "--host", DOMAIN, "--upstream", "http://a:1"], "is authentik's own domain"),
        (["web2", "--host", "web.example.test", "--upstream", "http://a:1"], "have the same host"),
        (["web2", "--host", "w2.example.test", "--upstream", "http://a"], "is not http(s)://HOST:PORT"),
        (
            ["web2", "--host", "w2.example.test", "--upstream", "http://a:1", "--bypass", "api"],
            "is not a path",
        ),
        (["Web 2", "--host", "w2.example.test", "--upstream", "http://a:1"], "is not a valid file name"),
        (["web", "--host", "w2.example.test", "--upstream", "http://a:1"], "an app named web exists already"),
    ],
)
def test_scaffold_app_add_refuses_bad_input_and_writes_nothing(project: Path, args, words):
    before = _snapshot(project)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout
    result = _scaffold(project, "app", "add", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr and "fix:" in result.stderr, result.stderr
    assert _snapshot(project) == before
    assert (
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout
        == head
    )


def test_app_add_list_and_remove_go_through_the_update_and_commit(project: Path):
    options = ["--upstream", "http://late:80", "--bypass", "/api/", "--group", "staff", "--no-websockets"]
    added = _scaffold(project, "app", "add", "late", "--host", "late.example.test", *options)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "backup:" in added.stdout  # the update's backup, before anything changed
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["apps"]["late"] == {
        "host": "late.example.test", "upstream": "http://late:80", "bypass": ["/api/"], "group": "staff",
        "websockets": False,
    }  # fmt: skip
    assert (project / "nginx/conf.d/apps/late.conf").is_file()
    assert "late.example.test" in (project / "certbot/hosts").read_text()
    assert "scaffold app add late" in _log(project)
    assert not _dirty(project)
    listed = _scaffold(project, "app", "list")
    assert "late\thttps://late.example.test -> http://late:80" in listed.stdout, listed.stdout
    assert "group staff" in listed.stdout and "no websockets" in listed.stdout

    removed = _scaffold(project, "app", "remove", "late")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (project / "nginx/conf.d/apps/late.conf").exists()
    assert "late.example.test" not in (project / "certbot/hosts").read_text()
    assert "late" not in (yaml.safe_load((project / ".copier-answers.yml").read_text())["apps"])
    assert "scaffold app remove late" in _log(project) and not _dirty(project)
    missing = _scaffold(project, "app", "remove", "late")
    assert missing.returncode == 2 and "there is no app named late" in missing.stderr


def test_plain_copier_update_with_apps_writes_the_nginx_files(project: Path):
    import copier

    copier.run_update(
        str(project), data={"apps": "{solo: {host: solo.example.test, upstream: 'http://solo:9000'}}"},
        defaults=True, overwrite=True, unsafe=True, skip_answered=True, quiet=True, vcs_ref="v1.0.0",
    )  # fmt: skip
    assert sorted(p.name for p in (project / "nginx/conf.d/apps").glob("*.conf")) == ["solo.conf"]
    assert [
        line for line in (project / "certbot/hosts").read_text().splitlines() if line[:1] not in ("#", "")
    ] == ["solo.example.test"]


def _log(project: Path) -> str:
    return subprocess.run(["git", "log", "--format=%s"], cwd=project, capture_output=True, text=True).stdout


def _dirty(project: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True
    ).stdout
