"""`scaffold update --apply` takes a `scaffold backup` archive before the authentik tag changes.

authentik's migrations are one-way: once `up -d` ran the new tag, only a dump taken before brings
the old version back. So the archive is taken before anything changes (its files match its
database), and without a database to dump the update refuses and changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from scaffold.cli import main
from tests.helpers.projects import commit, new_project, snapshot
from tests.helpers.stack import OVERRIDE, unique_name, write_override
from tests.helpers.templaterepo import git, make_template_repo

pytestmark = pytest.mark.docker

NEXT_PATCH = "2026.8.8"  # same release line as the template's default 2026.8.7: no skipped line


@pytest.fixture
def project(tmp_path: Path) -> Path:
    template = make_template_repo(tmp_path / "template")
    return new_project(tmp_path / unique_name("upd"), template)


def test_apply_without_a_running_database_refuses_and_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(project)
    code = main(["update", str(project), "--authentik", NEXT_PATCH, "--apply"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no backup could be taken, so nothing was updated" in err
    assert "postgresql service" in err and "without --apply" in err
    assert snapshot(project) == before
    assert git(project, "status", "--porcelain") == ""


def test_apply_backs_up_the_database_and_files_before_the_tag_changes(
    project: Path, standin_images, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_override(project, standin_images)
    commit(project, "test override")
    monkeypatch.setenv("COMPOSE_FILE", f"compose.yaml:{OVERRIDE}")
    compose = ["docker", "compose"]
    try:
        subprocess.run([*compose, "up", "-d", "--wait", "postgresql"], cwd=project, check=True, timeout=300)
        main(["update", str(project), "--authentik", NEXT_PATCH, "--apply"])  # the pull itself fails here
        out = capsys.readouterr().out
        archives = list((project / ".scaffold/archives").glob("*.tar.gz"))
        assert len(archives) == 1, out
        assert f"scaffold restore {archives[0]} {project} --yes" in out
        assert out.index("backup written") < out.index("review the changes"), "backup after the update"
        with tarfile.open(archives[0], "r:gz") as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())
            env = tar.extractfile("project/.env").read().decode()
        assert manifest["authentik_tag"] == "2026.8.7"
        assert "AUTHENTIK_TAG=2026.8.7" in env, "the archived .env must be the one before the update"
        assert "AUTHENTIK_TAG=2026.8.8" in (project / ".env").read_text()
    finally:
        subprocess.run([*compose, "down", "-v", "--timeout", "5"], cwd=project, check=False, timeout=300)
