"""`scaffold new` and `scaffold update` against a throwaway template repository with v1 and v2.

What a user sees: their edits, custom files and secrets survive an update; conflicts are
reported; every preflight failure is explained and leaves the project exactly as it was; an
interrupted update can be undone with the printed restore command.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from scaffold.cli import main
from tests.helpers.projects import MIGRATION, commit, new_project, publish_v2, snapshot, user_edits
from tests.helpers.templaterepo import edit, git, make_template_repo


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    return make_template_repo(tmp_path / "template")


@pytest.fixture
def project(tmp_path: Path, template_repo: Path) -> Path:
    return new_project(tmp_path / "sso", template_repo)


@pytest.fixture
def old_authentik_project(tmp_path: Path, template_repo: Path) -> Path:
    """A stack still on authentik 2026.2 (two release lines behind 2026.8)."""
    return new_project(tmp_path / "sso-old", template_repo, "authentik_version=2026.2.3")


def test_new_makes_a_committed_repo_without_secrets(project: Path):
    tracked = git(project, "ls-files").split()
    assert ".copier-answers.yml" in tracked and "compose.yaml" in tracked
    assert ".env" not in tracked and not any(name.startswith(".scaffold/") for name in tracked)
    assert git(project, "status", "--porcelain") == ""
    answers = (project / ".copier-answers.yml").read_text()
    assert "_src_path: /" in answers, "the template source must be stored as an absolute path"
    assert "_commit: v1.0.0" in answers
    env = dotenv_values(project / ".env")
    assert env["PG_PASS"] and env["PG_PASS"] not in answers
    assert (project / ".env").stat().st_mode & 0o777 == 0o600


def test_update_to_v2_keeps_edits_secrets_and_runs_migration_once(project: Path, template_repo: Path, capsys):
    user_edits(project)
    env_before = dotenv_values(project / ".env")
    raw_env_before = (project / ".env").read_text()
    tree_before = snapshot(project)
    publish_v2(template_repo)

    assert main(["update", str(project)]) == 0
    out = capsys.readouterr().out

    site = (project / "nginx/conf.d/authentik.conf").read_text()
    assert "client_max_body_size 256m;" in site, "the user's edit was lost"
    assert "keepalive 64;" in site, "the template change was not applied"
    assert "Permissions-Policy" in (project / "nginx/snippets/security-headers.conf").read_text()
    assert (project / "nginx/custom/authentik.d/mine.conf").read_text() == "location /mine { return 204; }\n"

    env_after = dotenv_values(project / ".env")
    assert env_after["AUTHENTIK_LOG_LEVEL"] == "info", "v2's new key was not added"
    for key in ("PG_PASS", "AUTHENTIK_SECRET_KEY"):
        assert env_after[key] == env_before[key]
    raw_env_after = (project / ".env").read_text()
    assert raw_env_after.startswith(raw_env_before), "existing .env lines were changed"
    assert "MY_SETTING='hello # world'" in raw_env_after and 'export ODD="x"' in raw_env_after
    assert env_before["PG_PASS"] not in out and env_before["AUTHENTIK_SECRET_KEY"] not in out

    assert (project / ".scaffold/migrations.log").read_text() == "v2_marker\n"
    assert "_commit: v2.0.0" in (project / ".copier-answers.yml").read_text()

    # Updating again to the same version changes nothing and does not re-run the migration.
    commit(project, "after update")
    assert main(["update", str(project)]) == 0
    assert (project / ".scaffold/migrations.log").read_text() == "v2_marker\n"

    # The printed restore command brings back the state before the first update.
    restore = re.search(r"restore with: (.+)", out).group(1)
    git(project, "reset", "-q", "--hard", "HEAD~1")  # drop the commit made after the update
    subprocess.run(restore, shell=True, check=True)
    restored = snapshot(project)
    restored.pop(".scaffold/migrations.log", None)
    restored.pop(".scaffold/state.json", None)
    tree_before.pop(".scaffold/state.json", None)
    assert restored == tree_before


def test_conflicting_edit_is_reported_with_markers(project: Path, template_repo: Path, capsys):
    edit(project, "nginx/conf.d/authentik.conf", "keepalive 32;", "keepalive 16;")
    commit(project)
    publish_v2(template_repo)

    assert main(["update", str(project)]) == 3
    out = capsys.readouterr().out
    assert "conflict in nginx/conf.d/authentik.conf" in out
    site = (project / "nginx/conf.d/authentik.conf").read_text()
    assert "<<<<<<<" in site and "keepalive 16;" in site and "keepalive 64;" in site


def test_conflicts_as_rej_files(project: Path, template_repo: Path, capsys):
    edit(project, "nginx/conf.d/authentik.conf", "keepalive 32;", "keepalive 16;")
    commit(project)
    publish_v2(template_repo)
    assert main(["update", str(project), "--conflict", "rej"]) == 3
    assert "nginx/conf.d/authentik.conf.rej" in capsys.readouterr().out
    assert (project / "nginx/conf.d/authentik.conf.rej").is_file()


def test_dry_run_reports_and_changes_nothing(project: Path, template_repo: Path, capfd):
    publish_v2(template_repo)
    before = snapshot(project)
    secret = dotenv_values(project / ".env")["PG_PASS"]
    capfd.readouterr()
    assert main(["update", str(project), "--dry-run"]) == 0
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "nginx/conf.d/authentik.conf" in text
    assert "AUTHENTIK_LOG_LEVEL" in text
    assert secret not in text
    assert snapshot(project) == before
    assert not (project / ".scaffold/backups").exists() or not any((project / ".scaffold/backups").iterdir())


def test_authentik_upgrade_follows_release_lines(project: Path, capsys):
    # 2026.8.7 -> 2026.11.0 is the next line: allowed without --yes.
    assert main(["update", str(project), "--authentik", "2026.11.0"]) == 0
    assert dotenv_values(project / ".env")["AUTHENTIK_TAG"] == "2026.11.0"
    assert "AUTHENTIK_TAG:-2026.11.0" in (project / "compose.yaml").read_text()
    assert "authentik_version: 2026.11.0" in (project / ".copier-answers.yml").read_text()


def test_user_edited_authentik_tag_is_kept(project: Path, capfd):
    edit(project, ".env", "AUTHENTIK_TAG=2026.8.7", "AUTHENTIK_TAG=2026.8.6")
    assert main(["update", str(project), "--authentik", "2026.11.0"]) == 0
    assert dotenv_values(project / ".env")["AUTHENTIK_TAG"] == "2026.8.6"
    assert "kept your value '2026.8.6'" in capfd.readouterr().out


def _refused(project: Path, argv: list[str], capsys, *words: str, code: int = 1) -> str:
    before = snapshot(project)
    assert main(argv) == code
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"
    assert snapshot(project) == before, "a refused update changed the project"
    return text


def test_preflight_no_answers_file(tmp_path: Path, capsys):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "compose.yaml").write_text("services: {}\n")
    _refused(folder, ["update", str(folder)], capsys, ".copier-answers.yml not found", "scaffold new")


def test_preflight_not_a_git_repo(project: Path, capsys):
    import shutil

    shutil.rmtree(project / ".git")
    _refused(project, ["update", str(project)], capsys, "not a git repository", "git init")


def test_preflight_dirty_tree_lists_files(project: Path, capsys):
    (project / "notes.txt").write_text("todo\n")
    edit(project, "compose.yaml", "restart: unless-stopped", "restart: always")
    _refused(project, ["update", str(project)], capsys, "notes.txt", "compose.yaml", "git stash -u")


def test_preflight_template_gone(project: Path, template_repo: Path, capsys):
    template_repo.rename(template_repo.with_name("moved"))
    _refused(project, ["update", str(project)], capsys, "is not there any more", "_src_path")


def test_preflight_downgrade(project: Path, template_repo: Path, capsys):
    publish_v2(template_repo)
    assert main(["update", str(project)]) == 0
    commit(project, "v2")
    capsys.readouterr()
    _refused(project, ["update", str(project), "--to", "v1.0.0"], capsys, "downgrades are not supported")


def test_preflight_authentik_downgrade(project: Path, capsys):
    _refused(
        project, ["update", str(project), "--authentik", "2026.5.3"], capsys, "does not support downgrades"
    )
    _refused(
        project, ["update", str(project), "--authentik", "latest"], capsys, "not an authentik release", code=2
    )


def test_preflight_authentik_skipped_lines_need_yes(old_authentik_project: Path, capsys):
    project = old_authentik_project
    text = _refused(project, ["update", str(project), "--authentik", "2026.11.0"], capsys, "2026.5, 2026.8")
    assert "--yes" in text


def test_skipping_lines_with_yes_warns_and_proceeds(old_authentik_project: Path, capsys):
    project = old_authentik_project
    assert main(["update", str(project), "--authentik", "2026.11.0", "--yes"]) == 0
    assert "skips the release line(s) 2026.5, 2026.8" in capsys.readouterr().out
    assert dotenv_values(project / ".env")["AUTHENTIK_TAG"] == "2026.11.0"


def test_preflight_unknown_question(project: Path, capsys):
    _refused(
        project,
        ["update", str(project), "--data", "domian=x.example.test"],
        capsys,
        "did you mean 'domain'",
        code=2,
    )


def test_update_killed_midway_is_recoverable_from_printed_backup(project: Path, template_repo: Path):
    """SIGKILL while copier is applying v2 (a slow migration holds it there)."""
    user_edits(project)
    before = snapshot(project)
    slow = MIGRATION.replace('return "marked"', 'import time\n    time.sleep(30)\n    return "marked"')
    publish_v2(template_repo, migration_body=slow)

    process = subprocess.Popen(
        [sys.executable, "-m", "scaffold", "update", str(project)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_COLOR": "1"}, start_new_session=True,
    )  # fmt: skip
    restore = None
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    for line in process.stdout:  # the backup and its restore command come before copier starts
        if "restore with:" in line:
            restore = line.split("restore with:", 1)[1].strip()
            break
    # Wait until copier has rewritten files in the project, then kill it hard.
    while (
        time.monotonic() < deadline and "_commit: v2.0.0" not in (project / ".copier-answers.yml").read_text()
    ):
        time.sleep(0.1)
    assert process.poll() is None, "the update finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # the whole update, copier's migration process included
    process.wait(timeout=10)
    assert restore, "the restore command was not printed before the update started"
    assert snapshot(project) != before, "the kill came too late or too early to test anything"

    subprocess.run(restore, shell=True, check=True)
    after = snapshot(project)
    after.pop(".scaffold/migrations.log", None)
    assert after == before
