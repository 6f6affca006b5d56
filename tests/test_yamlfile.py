"""scaffold reads copier's YAML files (the answers file, copier.yml) as copier does: PyYAML, YAML 1.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaffold.answers import load_answers
from scaffold.errors import ProjectError
from scaffold.template_source import template_questions
from tests.helpers.stack import REPO_ROOT

ANSWERS = """\
# Changes here will be overwritten by Copier
_src_path: /srv/template
project_name: sso
domain: sso.example.test
authentik_version: 2026.8.7
enable_ipv6: {ipv6}
smtp_enabled: {smtp}
"""


@pytest.mark.parametrize(
    ("ipv6", "smtp", "expected"), [("no", "on", (False, True)), ("yes", "off", (True, False))]
)
def test_answers_file_reads_yaml_1_1_booleans_as_copier_does(tmp_path: Path, ipv6, smtp, expected) -> None:
    """A hand edit copier reads as a boolean (`yes`, `off`) is one for scaffold too, not a wrong type."""
    (tmp_path / ".copier-answers.yml").write_text(ANSWERS.format(ipv6=ipv6, smtp=smtp))
    answers = load_answers(tmp_path)
    assert (answers.enable_ipv6, answers.smtp_enabled) == expected


def test_broken_answers_file_is_named_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / ".copier-answers.yml").write_text("project_name: [unclosed\n")
    with pytest.raises(ProjectError) as raised:
        load_answers(tmp_path)
    assert "cannot read" in raised.value.message and "git checkout" in (raised.value.hint or "")


def test_template_questions_come_with_their_copier_types() -> None:
    questions = template_questions(str(REPO_ROOT))
    assert questions is not None
    assert (questions["domain"], questions["smtp_port"], questions["enable_ipv6"]) == ("str", "int", "bool")
    assert not any(name.startswith("_") for name in questions)
