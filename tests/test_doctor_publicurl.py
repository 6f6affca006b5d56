"""doctor's `stack.public-url` judgement and the public URL of projects from before the question.

Pure functions, no Docker: the live check runs on the router stack in tests/e2e/test_e2e_public_url.py.
"""

from __future__ import annotations

from scaffold.answers import Answers
from scaffold.doctor.stack.publicurl import judge_public_url
from scaffold.doctor.upstream import parse_upstream_proxies

NONE = parse_upstream_proxies("")


def test_public_url_on_a_published_port_is_ok() -> None:
    assert judge_public_url("https://sso.example.com:18443", [18443], NONE).status == "ok"
    assert judge_public_url("https://sso.example.com", [443], NONE).status == "ok"


def test_public_url_without_port_while_only_a_high_port_is_published_warns_with_the_answer() -> None:
    outcome = judge_public_url("https://sso.example.com", [18443], NONE)
    assert outcome.status == "warn"
    assert "is port 443" in outcome.message and "only host port 18443" in outcome.message
    assert "`scaffold update --data public_url=https://sso.example.com:18443`" in (outcome.fix or "")
    assert "upstream_proxies" in (outcome.fix or "")


def test_a_listed_proxy_in_front_explains_the_other_port() -> None:
    for answer in ("192.0.2.10", "cloudflare"):
        outcome = judge_public_url("https://sso.example.com", [18443], parse_upstream_proxies(answer))
        assert outcome.status == "ok", outcome


def test_a_server_started_with_another_base_url_warns() -> None:
    outcome = judge_public_url(
        "https://sso.example.com", [443], NONE, server_base_url="https://sso.example.com:18443"
    )
    assert outcome.status == "warn" and "https://sso.example.com:18443" in outcome.message
    assert "docker compose up -d" in (outcome.fix or "")
    assert judge_public_url(
        "https://sso.example.com", [443], NONE, server_base_url="https://sso.example.com/"
    )


def test_projects_from_before_the_question_keep_the_published_port() -> None:
    base = {"project_name": "p", "domain": "sso.example.com", "authentik_version": "2026.8.7"}
    assert Answers.from_mapping({**base, "https_port": 18443}).public_url == "https://sso.example.com:18443"
    assert Answers.from_mapping(base).public_url == "https://sso.example.com"
    given = {**base, "https_port": 18443, "public_url": "https://sso.example.com"}
    assert Answers.from_mapping(given).public_url == "https://sso.example.com"
