"""copier.yml's validators and the generated files, rendered with copier's own Jinja environment.

The environment is copier's (its `Worker.jinja_env`: sandbox, default filters, and copier.yml's
`_jinja_extensions`, which load scaffold/answer_rules.py from the template checkout by path), so:
- every validator, rendered as copier renders it, says exactly what the Python rule says, on
  generated answers and for every question (issue 14: the rules were written twice and drifted);
- every answer a user may give reaches compose.yaml, the nginx files, `.env.example` and the README
  as that file's syntax needs (review item 5: `$`, `"` and `\\` went into compose.yaml as they were).
The same files through the real Compose and nginx are test_template.py's job.
"""

from __future__ import annotations

import functools
import inspect
import io
import re
import string
from collections.abc import Iterator

import pytest
import yaml
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaffold.answer_rules import RULES, acme_directory_url, parse_upstream_proxies, problem_with
from tests.helpers.answerdata import GOOD_ANSWERS, VALID_TEXT_ANSWERS
from tests.helpers.copierenv import copier_jinja_env
from tests.helpers.stack import REPO_ROOT

QUESTIONS = {
    name: spec
    for name, spec in yaml.safe_load((REPO_ROOT / "copier.yml").read_text()).items()
    if not name.startswith("_")
}


@pytest.fixture(scope="module")
def jinja_env(tmp_path_factory) -> Iterator:
    """copier's environment for this template (a clone of the working tree, dirty changes included)."""
    with copier_jinja_env(tmp_path_factory.mktemp("dst")) as env:
        yield env


def test_every_question_that_takes_free_input_has_a_validator_and_each_calls_its_rule():
    free = {
        name
        for name, spec in QUESTIONS.items()
        if spec.get("type") in {"str", "int"} and not spec.get("choices")
    }
    validated = {name for name, spec in QUESTIONS.items() if spec.get("validator")}
    assert free <= validated, f"no validator: {sorted(free - validated)}"
    assert validated == set(RULES), "a validator without a Python rule, or a rule copier never calls"
    for name in validated:
        assert QUESTIONS[name]["validator"].startswith(f"{{{{ problem_with('{name}', {name}"), name


def _by_type(kind: str):
    if kind == "bool":
        return st.booleans()
    if kind == "int":
        return st.one_of(st.integers(-5, 70000), st.sampled_from([0, 80, 443, 65535, 65536]))
    return st.text(max_size=30)


def _answers_for(question: str):
    """Answers of all kinds: random text, valid answers, and valid answers with a character added."""
    kind = QUESTIONS[question].get("type", "str")
    if kind != "str":
        return _by_type(kind)
    known = [answer for name, answer, _ in GOOD_ANSWERS if name == question]
    known.append(VALID_TEXT_ANSWERS.get(question, ""))
    spoiled = st.builds(
        lambda valid, extra, at: valid[:at] + extra + valid[at:],
        st.sampled_from(known),
        st.sampled_from([*"\n $\"'\\;{}#/:%,", "\r\n", "\x00"]),
        st.integers(0, 40),
    )
    return st.one_of(st.text(max_size=30), st.sampled_from(known), spoiled)


@pytest.fixture(scope="module")
def destinations(tmp_path_factory) -> dict:
    """A project folder whose .env holds every DNS provider's secret, and one without .env."""
    from scaffold.answer_rules import DNS_PROVIDERS

    with_env, without = tmp_path_factory.mktemp("with-env"), tmp_path_factory.mktemp("without-env")
    (with_env / ".env").write_text("".join(f"{p.env_key}=c2VjcmV0\n" for p in DNS_PROVIDERS.values()))
    return {True: with_env, False: without}


@functools.cache
def _validator(jinja_env, question: str):
    """The question's validator compiled once (copier compiles it at each answer; same template)."""
    return jinja_env.from_string(QUESTIONS[question]["validator"])


@pytest.mark.parametrize("question", sorted(RULES))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_validator_rendered_by_copier_says_what_the_python_rule_says(jinja_env, destinations, question, data):
    """The answer, and the other answers its rule depends on (the rule's keyword-only parameters)."""
    depends_on = [
        name
        for name, parameter in inspect.signature(RULES[question]).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    context = {
        name: data.draw(_by_type(QUESTIONS[name].get("type", "str")), label=name)
        for name in depends_on
        if name != "stored"
    }
    context[question] = data.draw(_answers_for(question), label=question)
    others = {name: context[name] for name in depends_on if name != "stored"}
    if "stored" in depends_on:  # computed by the validator from the destination's .env
        context["acme_dns_provider"] = data.draw(st.sampled_from(["rfc2136", "cloudflare", "x"]))
        others["acme_dns_provider"] = context["acme_dns_provider"]
        with_env = data.draw(st.booleans(), label="stored")
        context["_copier_conf"] = {"dst_path": str(destinations[with_env])}
        others["stored"] = with_env and context["acme_dns_provider"] != "x"
    rendered = _validator(jinja_env, question).render(context).strip()
    expected = problem_with(question, context[question], **others)
    assert rendered == expected.strip(), (question, context[question])


# --- Every valid answer reaches its file as that file needs -----------------------------------

_ATEXT = re.escape("!#$%&'*+/=?^_`{|}~-")
_URL_CHARS = re.escape("._~!$&'()*+,;=:@/?-")


def _valid(question: str, strategy, **others):
    return strategy.filter(lambda value: problem_with(question, value, **others) == "")


#: Sender addresses as people write them: bare, or with a plain or quoted display name.
SENDER = (
    r'((("[^"\\\x00-\x1f]{0,8}"|[A-Za-z0-9 .!#$%&*+/=?^_`{|}~\'-]{1,8}) ?)?<)?'
    rf"[A-Za-z0-9{_ATEXT}]{{1,8}}@[a-z]{{1,8}}\.[a-z]{{2,4}}>?"
)


def _upstream_proxies():
    import ipaddress

    v4 = st.builds(
        lambda value, prefix: str(ipaddress.ip_network((value, prefix), strict=False)),
        st.integers(0, 2**32 - 1),
        st.integers(8, 32),
    )
    v6 = st.builds(
        lambda value, prefix: str(ipaddress.ip_network((value, prefix), strict=False)),
        st.integers(0, 2**128 - 1),
        st.integers(16, 128),
    )
    items = st.lists(st.one_of(v4, v6, st.just("cloudflare"), st.just("Cloudflare")), max_size=4)
    return st.builds(lambda parts, sep: sep.join(parts), items, st.sampled_from([", ", " ", ",", "\n"]))


VALID_ANSWERS = st.fixed_dictionaries(
    {
        "project_name": _valid("project_name", st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)),
        "domain": _valid("domain", st.from_regex(r"([a-z0-9-]{1,8}\.){1,3}[a-z]{2,6}", fullmatch=True)),
        "acme_email": _valid(
            "acme_email",
            st.from_regex(
                rf"([A-Za-z0-9{_ATEXT}]{{1,10}}(\.[A-Za-z0-9]{{1,4}})?@[a-z]{{1,8}}\.[a-z]{{2,4}})?",
                fullmatch=True,
            ),
        ),
        "acme_server": st.one_of(
            st.sampled_from(["letsencrypt", "letsencrypt-staging"]),
            _valid(
                "acme_server",
                st.from_regex(
                    rf"https://[a-z0-9]{{1,8}}(\.[a-z]{{2,4}})?(:[1-9][0-9]{{0,3}})?(/([A-Za-z0-9{_URL_CHARS}]|%[0-9A-F]{{2}}){{0,20}})?",
                    fullmatch=True,
                ),
            ),
        ),
        "authentik_version": _valid(
            "authentik_version",
            st.from_regex(r"20(2[6-9]|[3-9][0-9])\.[0-9]{1,2}\.[0-9]{1,3}", fullmatch=True),
        ),
        "web_path": _valid("web_path", st.from_regex(r"(/[A-Za-z0-9._~-]{1,6}){0,3}/", fullmatch=True)),
        "upstream_scheme": st.sampled_from(["https", "http"]),
        "target": st.sampled_from(["compose", "swarm"]),
        "enable_ipv6": st.booleans(),
        "upstream_proxies": _valid("upstream_proxies", _upstream_proxies()),
        "http_port": st.integers(1, 32000),
        "https_port": st.integers(32001, 65535),
        "smtp_enabled": st.booleans(),
        "smtp_host": _valid(
            "smtp_host", st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,10}[A-Za-z0-9])?", fullmatch=True)
        ),
        "smtp_security": st.sampled_from(["starttls", "ssl", "none"]),
        "smtp_port": st.integers(1, 65535),
        "smtp_username": _valid("smtp_username", st.text(string.printable.strip() + " äß", max_size=12)),
        "smtp_from": _valid("smtp_from", st.from_regex(SENDER, fullmatch=True)),
        "outpost_docker_socket": st.booleans(),
        "public_url_port": st.one_of(st.none(), st.integers(1, 65535).filter(lambda port: port != 443)),
    }
).map(
    lambda drawn: {
        **{key: value for key, value in drawn.items() if key != "public_url_port"},
        "public_url": f"https://{drawn['domain']}"
        + (f":{drawn['public_url_port']}" if drawn["public_url_port"] else ""),
    }
)


EXAMPLE_ANSWERS = {
    **VALID_TEXT_ANSWERS,
    "acme_accept_no_email": False,
    "upstream_scheme": "https",
    "target": "compose",
    "enable_ipv6": False,
    "http_port": 80,
    "https_port": 443,
    "smtp_enabled": False,
    "smtp_security": "starttls",
    "smtp_port": 587,
    "outpost_docker_socket": False,
}


def _render(jinja_env, relative: str, answers: dict) -> str:
    return jinja_env.get_template(f"template/{relative}").render(answers)


def _nginx_statements(text: str) -> list[list[str]]:
    """nginx's grammar, enough to see structure: words up to `;`, `{` or `}`; braces must balance
    (the parentheses of an `if (...)` condition are left out)."""
    words = re.findall(r"[^\s;{}()]+|[;{}]", re.sub(r"#[^\n]*", "", text))
    statements, current, depth = [], [], 0
    for word in words:
        if word in ";{}":
            depth += {"{": 1, "}": -1, ";": 0}[word]
            assert depth >= 0, "a } too many"
            if current:
                statements.append(current)
            current = []
        else:
            assert re.fullmatch(r"[^'\"\\]+|'[^'\\]*'|\"[^\"\\]*\"", word), f"a stray quote in {word!r}"
            current.append(word)
    assert depth == 0 and not current, "unbalanced braces or a statement without ';'"
    return statements


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=VALID_ANSWERS)
def test_every_valid_answer_reaches_each_generated_file_unchanged(jinja_env, answers):
    compose = yaml.safe_load(_render(jinja_env, "compose.yaml.jinja", answers))
    unescape = lambda value: value.replace("$$", "$")  # noqa: E731  (what Compose does with `$$`)
    if (
        answers["target"] == "compose"
    ):  # a Swarm stack file may not have `name:` (the stack is named on deploy)
        assert isinstance(compose["name"], str) and compose["name"] == answers["project_name"]
    else:
        assert "name" not in compose and compose["services"]["nginx"]["deploy"]["mode"] == "global"
    certbot = {key: unescape(value) for key, value in compose["services"]["certbot"]["environment"].items()}
    assert certbot["DOMAIN"] == answers["domain"]
    assert certbot["ACME_SERVER"] == acme_directory_url(answers["acme_server"])
    assert certbot["ACME_EMAIL"] == answers["acme_email"]
    server = compose["x-authentik-environment"]
    assert unescape(server.get("AUTHENTIK_WEB__PATH", "/")) == answers["web_path"]
    assert server["AUTHENTIK_WEB__BASE_URL"] == answers["public_url"]

    proxies = parse_upstream_proxies(answers["upstream_proxies"])
    real_ip = _nginx_statements(_render(jinja_env, "nginx/snippets/real-ip.conf.jinja", answers))
    assert [s[1:] for s in real_ip if s[0] == "set_real_ip_from"] == [[r] for r in proxies.ranges]
    site = _nginx_statements(_render(jinja_env, "nginx/conf.d/authentik.conf.jinja", answers))
    assert [s for s in site if s[0] == "server_name"] == [["server_name", answers["domain"]]] * 2
    if answers["web_path"] != "/":
        assert ["location", "^~", answers["web_path"]] in site
    assert ["return", "301", answers["public_url"] + "$request_uri"] in site
    # Swarm: every replica by Swarm's task DNS name, looked up while nginx runs; Compose: the upstream block.
    upstream = "$scaffold_authentik:" if answers["target"] == "swarm" else "authentik"
    passes = [s[1] for s in site if s[0] == "proxy_pass"]
    assert len(passes) == 1 and passes[0].startswith(f"{answers['upstream_scheme']}://{upstream}"), passes

    env_example = _render(jinja_env, ".env.example.jinja", answers)
    values = dotenv_values(stream=io.StringIO(env_example), interpolate=False)
    assert values["AUTHENTIK_TAG"] == answers["authentik_version"]
    if answers["smtp_enabled"]:
        assert values["AUTHENTIK_EMAIL__HOST"] == answers["smtp_host"]
        assert values["AUTHENTIK_EMAIL__PORT"] == str(answers["smtp_port"])
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", key) for key in values), "an answer started a line of its own"

    answers_file = jinja_env.get_template("template/{{ _copier_conf.answers_file }}.jinja")
    assert yaml.safe_load(answers_file.render(_copier_answers=answers)) == answers

    readme = _render(jinja_env, "README.md.jinja", answers)
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert rows and all(row.count("|") == 5 for row in rows), "an answer broke the services table"
    assert f"`{answers['acme_server']}`" in readme
    if not proxies.empty:
        assert f"`upstream_proxies`: `{proxies.listed}`" in readme


@pytest.mark.parametrize(
    "project_name", ["2024", "null", "true", "1e3", "0x1f", "007", "yes", "off", "1_000"]
)
def test_project_name_stays_a_string_in_compose_yaml(jinja_env, project_name):
    """Review item 7: an unquoted `name: 007` is a number to YAML, and Compose refuses the file."""
    assert problem_with("project_name", project_name) == ""
    answers = {**EXAMPLE_ANSWERS, "project_name": project_name}
    assert yaml.safe_load(_render(jinja_env, "compose.yaml.jinja", answers))["name"] == project_name
