"""`Answers` (what scaffold reads from a project's answers file) against copier.yml (what copier asks)."""

from __future__ import annotations

import dataclasses

import yaml

from scaffold.answers import ANSWER_TYPES, Answers
from tests.helpers.stack import REPO_ROOT

COPIER_TYPES = {"str": str, "bool": bool, "int": int}
#: Not answers of a question: where the answers came from, and the file as read.
RECORD_ONLY = {"src_path", "commit", "raw"}


def questions() -> dict[str, dict]:
    data = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    return {name: spec for name, spec in data.items() if not name.startswith("_") and not spec.get("secret")}


def test_answers_has_every_question_of_copier_yml_with_its_type():
    fields = {item.name: item for item in dataclasses.fields(Answers) if item.name not in RECORD_ONLY}
    assert set(fields) == set(questions())
    for name, spec in questions().items():
        expected = COPIER_TYPES[spec.get("type", "str")]
        assert ANSWER_TYPES[name] is expected, name
        assert fields[name].type == expected.__name__, name


def test_answers_defaults_are_copier_yml_defaults():
    fields = {item.name: item for item in dataclasses.fields(Answers)}
    for name, spec in questions().items():
        default = spec.get("default")
        if name in ("project_name", "domain", "authentik_version"):
            continue  # required in the record; copier.yml's default is checked by test_template_source
        if isinstance(default, str) and ("{{" in default or "{%" in default):
            continue  # computed from other answers (e.g. public_url, smtp_port): Answers.from_mapping
        assert fields[name].default == default, name


def test_a_project_from_before_a_question_reads_that_question_s_default():
    answers = Answers.from_mapping(
        {
            "project_name": "sso",
            "domain": "sso.example.test",
            "authentik_version": "2026.8.7",
            "https_port": 8443,
        }
    )
    assert (
        answers.web_path == "/" and answers.backup_schedule == "off" and answers.acme_server == "letsencrypt"
    )
    assert answers.public_url == "https://sso.example.test:8443"
