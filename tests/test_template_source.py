"""The template source, git, the CLI's exit codes and the release rules: one definition each.

Fast tests, no Docker: `scaffold update` and doctor agree on the newest template version (a final
release outranks its release candidates); git never hangs and never ends in a traceback; every exit
code is in `--help` and the README; copier.yml's authentik question follows `releases`; no module of
the update path imports the CLI.
"""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scaffold import template_source
from scaffold.answer_rules import problem_with
from scaffold.cli import build_parser
from scaffold.doctor.versions import compare_template
from scaffold.errors import EXIT_CODES, GitError, TemplateError
from scaffold.gitutil import git
from scaffold.releases import KNOWN_LINES, OLDEST_SUPPORTED, is_known_line, is_supported, parse_version
from scaffold.update import _target_ref
from tests.helpers.stack import REPO_ROOT


@pytest.mark.parametrize(
    ("tags", "newest"),
    [
        (["v1.0.0", "v2.0.0rc1", "v2.0.0"], "v2.0.0"),
        (["v1.0.0", "v2.0.0", "v2.0.0rc1"], "v2.0.0"),
        (["v1.0.0", "v2.0.0rc1"], "v1.0.0"),  # a release candidate is never "the newest" (copier agrees)
        (["v1.2.0", "v1.10.0", "latest", "2a590f4"], "v1.10.0"),
    ],
)
def test_update_and_doctor_agree_that_a_final_release_outranks_its_candidates(
    tags: list[str], newest: str
) -> None:
    assert _target_ref(None, "v1.0.0", "/nowhere", tags) == newest
    assert compare_template(newest, tags)[0] == "current"
    assert compare_template("v1.0.0", tags)[2] == newest


def test_downgrade_is_seen_from_a_describe_style_commit() -> None:
    with pytest.raises(Exception, match="downgrades are not supported"):
        _target_ref("v1.0.0", "v1.2.0-3-gabc1234", "/nowhere", ["v1.0.0", "v1.2.0"])


def test_a_url_source_is_recognised_and_an_option_is_not_a_source() -> None:
    assert template_source.is_url("https://example.test/t.git")
    assert template_source.is_url("git@example.test:t.git")
    assert not template_source.is_url("/srv/template")
    assert template_source.source_problem("--upload-pack=touch /tmp/x") is not None
    with pytest.raises(TemplateError, match="relative path"):
        template_source.template_tags("template")


def test_git_runner_times_out_with_a_message() -> None:
    """A remote that accepts the connection and never answers must not hang an update or doctor."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    url = f"git://127.0.0.1:{server.getsockname()[1]}/template.git"
    try:
        with pytest.raises(TemplateError, match=r"did not finish within 1s"):
            template_source.template_tags(url, timeout=1)
    finally:
        for connection in accepted:
            connection.close()
        server.close()


def test_missing_git_is_a_git_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GitError, match="git is not installed"):
        git(tmp_path, "status")


def test_every_exit_code_is_in_help_and_readme() -> None:
    parser = build_parser()
    helps = [parser.format_help()]
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    helps += [sub.format_help() for sub in subparsers.choices.values()]
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("###", 1)[0]
    assert sorted(int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)) == sorted(EXIT_CODES)
    for text in helps:
        flat = " ".join(text.split())
        for code, meaning in EXIT_CODES.items():
            assert f"{code} {meaning}" in flat, f"exit code {code} missing from:\n{text}"


def _authentik_validator() -> tuple[str, str]:
    from scaffold.yamlfile import read_yaml

    question = read_yaml(REPO_ROOT / "copier.yml")["authentik_version"]
    return question.get("validator", ""), question["default"]


@pytest.mark.parametrize("line", KNOWN_LINES)
def test_copier_question_follows_the_oldest_supported_line(line: tuple[int, int]) -> None:
    """The question's rule (what copier asks) and the update rule agree on the oldest supported line."""
    version = f"{line[0]}.{line[1]}.1"
    message = problem_with("authentik_version", version)
    assert (message == "") == is_supported(parse_version(version)), (line, message)
    if line < OLDEST_SUPPORTED:
        assert f"{OLDEST_SUPPORTED[0]}.{OLDEST_SUPPORTED[1]}" in message


def test_copier_default_authentik_is_a_supported_known_release() -> None:
    _, default = _authentik_validator()
    version = parse_version(default)
    assert is_supported(version) and is_known_line(version)


def test_update_modules_do_not_import_the_cli() -> None:
    """The import cycle is gone: update, detect, hook and output never import scaffold.cli."""
    code = (
        "import sys, scaffold.update, scaffold.detect, scaffold.hook, scaffold.output\n"
        "assert 'scaffold.cli' not in sys.modules, 'imported scaffold.cli'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-P", "-c", code], check=True, cwd=REPO_ROOT, env=env)
    for name in ("update.py", "detect.py", "hook.py", "output.py", "template_source.py", "copierrun.py"):
        tree = ast.parse((REPO_ROOT / "scaffold" / name).read_text())
        imported = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "scaffold.cli" not in imported, name
    cli = ast.parse((REPO_ROOT / "scaffold" / "cli.py").read_text())
    from_hook = [
        alias.name
        for node in ast.walk(cli)
        if isinstance(node, ast.ImportFrom) and node.module == "scaffold.hook"
        for alias in node.names
    ]
    assert from_hook == ["main"], "the CLI takes only the copier task's entry point from hook.py"
