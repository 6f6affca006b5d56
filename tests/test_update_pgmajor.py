"""A template release that changes the PostgreSQL major, without a running stack.

A plain `copier update` is refused before it writes anything (it would merge the new image over
the old data); a release that keeps the major goes through; a user's own `image:` pin conflicts
and the report says how to move the database; a project that never ran takes the new image. The
move itself, on the real daemon, is in e2e/test_e2e_pgmajor.py.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import copier
import pytest

from scaffold.cli import main
from scaffold.dbupgrade import (
    TemplateMove,
    compose_image,
    database_mount,
    database_volume,
    pin_image,
    tag_major,
)
from scaffold.errors import EXIT_NEEDS_ATTENTION
from scaffold.migrations import TEMPLATE_COMPOSE, template_postgres_image
from tests.helpers.projects import commit, new_project, snapshot
from tests.helpers.stack import unique_name
from tests.helpers.templaterepo import edit, git, make_template_repo, release

STOCK = "image: postgres:16-alpine"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return make_template_repo(tmp_path / "template")


def publish(template: Path, image: str) -> None:
    edit(template, "template/compose.yaml.jinja", STOCK, f"image: {image}")
    release(template, "v2.0.0")


def test_plain_copier_update_to_another_major_is_refused_before_any_change(
    tmp_path: Path, template: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    project = new_project(tmp_path / unique_name("p"), template)
    publish(template, "postgres:17-alpine")
    before = snapshot(project)
    capfd.readouterr()
    with pytest.raises(Exception) as raised:  # copier's TaskError: the guard migration failed
        copier.run_update(str(project), overwrite=True, unsafe=True, defaults=True, vcs_ref="v2.0.0")
    err = capfd.readouterr().err
    assert "postgres_image_guard" in str(raised.value) + err
    assert "postgres:17-alpine" in err and "`scaffold update`" in err, err
    assert snapshot(project) == before
    assert git(project, "status", "--porcelain") == ""


def test_plain_copier_update_within_the_major_goes_through(tmp_path: Path, template: Path) -> None:
    project = new_project(tmp_path / unique_name("p"), template)
    publish(template, "postgres:16.9-alpine")
    copier.run_update(str(project), overwrite=True, unsafe=True, defaults=True, vcs_ref="v2.0.0", quiet=True)
    assert compose_image((project / "compose.yaml").read_text()) == "postgres:16.9-alpine"


def test_a_hand_pinned_image_conflicts_and_the_report_says_how_to_move(
    tmp_path: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project(tmp_path / unique_name("p"), template)
    edit(project, "compose.yaml", STOCK, "image: postgres:15-alpine")  # the user's own major
    commit(project, "stay on 15")
    publish(template, "postgres:17-alpine")
    code = main(["update", str(project)])
    out = capsys.readouterr().out
    assert code == EXIT_NEEDS_ATTENTION, out
    assert "conflict in compose.yaml" in out and "scaffold db upgrade --to MAJOR" in out, out
    text = (project / "compose.yaml").read_text()
    assert "postgres:15-alpine" in text and "postgres:17-alpine" in text and "<<<<<<<" in text


@pytest.mark.docker
def test_a_project_that_never_ran_takes_the_new_image(
    tmp_path: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = new_project(tmp_path / unique_name("p"), template)
    publish(template, "postgres:17-alpine")
    code = main(["update", str(project)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "postgresql takes postgres:17-alpine (no database volume yet)" in out
    assert compose_image((project / "compose.yaml").read_text()) == "postgres:17-alpine"


def test_the_guard_reads_this_template_s_postgresql_image() -> None:
    text = TEMPLATE_COMPOSE.read_text()
    assert template_postgres_image(text) == "postgres:16-alpine"
    assert STOCK in text, "the tests above edit this line: keep them in step with the template"


@pytest.mark.parametrize(
    ("image", "major"),
    [
        ("postgres:17-alpine", 17),
        ("postgres:16.4", 16),
        ("docker.example/library/postgres:18", 18),
        ("postgres:latest", None),
        ("postgres", None),
        ("registry.example:5000/pg", None),
        ("scaffold-standin/postgres:c2872ea2c967", None),
    ],
)
def test_tag_major(image: str, major: int | None) -> None:
    assert tag_major(image) == major


def test_pin_image_changes_only_the_image_line(tmp_path: Path, template: Path) -> None:
    project = new_project(tmp_path / unique_name("p"), template)
    text = (project / "compose.yaml").read_text()
    pinned = pin_image(text, "postgres:15-alpine")
    diff = [line for line in difflib.ndiff(text.splitlines(), pinned.splitlines()) if line[:1] in "+-"]
    assert diff == ["-     image: postgres:16-alpine", "+     image: postgres:15-alpine"]
    assert database_volume(text) == "database"


@pytest.mark.parametrize(
    ("data_major", "new_major", "unknown", "keeps_old", "moves", "says"),
    [
        (None, 17, None, False, False, "postgresql takes postgres:17-alpine (no database volume yet)"),
        (16, 16, None, False, False, "postgresql takes postgres:17-alpine (the same major 16)"),
        (16, 17, None, True, True, "compose.yaml keeps postgres:16-alpine until the database is moved"),
        (18, 17, None, True, False, "older than the database's 18: compose.yaml keeps postgres:16-alpine"),
        (16, 17, "no daemon", True, False, "cannot tell whether a database exists"),
    ],
)
def test_what_a_new_postgresql_image_means_for_the_database(
    data_major: int | None,
    new_major: int,
    unknown: str | None,
    keeps_old: bool,
    moves: bool,
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    move = TemplateMove("postgres:16-alpine", "postgres:17-alpine", data_major, new_major, unknown)
    assert (move.needs_upgrade, move.is_upgrade) == (keeps_old, moves)
    move.describe(tmp_path, apply=False)
    assert says in " ".join(capsys.readouterr().out.split())


def test_keeping_the_old_image_also_keeps_the_old_data_mount(tmp_path: Path, template: Path) -> None:
    """A release moving to 18 also moves the mount to /var/lib/postgresql: the old server there would
    find no data and initialise an empty database, so the mount goes back with the image."""
    project = new_project(tmp_path / unique_name("p"), template)
    text = (project / "compose.yaml").read_text()
    release_18 = text.replace(STOCK, "image: postgres:18-alpine").replace(
        "database:/var/lib/postgresql/data", "database:/var/lib/postgresql"
    )
    assert "- database:/var/lib/postgresql\n" in release_18
    assert pin_image(release_18, "postgres:16-alpine", database_mount(text)) == text


def test_plain_copier_update_leaves_a_user_s_own_major_alone_when_the_template_keeps_its_image(
    tmp_path: Path, template: Path
) -> None:
    """After `scaffold db upgrade --to 17` the image is the user's; a release that does not touch
    the template's image line leaves it to copier's merge, so the guard lets it through."""
    project = new_project(tmp_path / unique_name("p"), template)
    edit(project, "compose.yaml", STOCK, "image: postgres:17-alpine")
    commit(project, "db upgrade")
    edit(template, "template/nginx/conf.d/authentik.conf.jinja", "keepalive 32;", "keepalive 64;")
    release(template, "v2.0.0")
    copier.run_update(str(project), overwrite=True, unsafe=True, defaults=True, vcs_ref="v2.0.0", quiet=True)
    assert compose_image((project / "compose.yaml").read_text()) == "postgres:17-alpine"
    assert "keepalive 64;" in (project / "nginx/conf.d/authentik.conf").read_text()
