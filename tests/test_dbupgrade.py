"""`scaffold db upgrade`'s change to compose.yaml, on the template's own rendered file."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from scaffold.dbupgrade import switch_compose
from scaffold.errors import ProjectError
from tests.helpers.stack import generate


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> str:
    project = generate(tmp_path_factory.mktemp("compose") / "p", {"project_name": "p"}, skip_tasks=True)
    return (project / "compose.yaml").read_text()


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize(("major", "mount"), [(17, "/var/lib/postgresql/data"), (18, "/var/lib/postgresql")])
def test_switch_changes_image_and_mount_and_adds_a_volume(rendered: str, major: int, mount: str) -> None:
    after = switch_compose(rendered, image=f"postgres:{major}-alpine", major=major)
    assert changed_lines(rendered, after) == [
        "-    image: postgres:16-alpine",
        f"+    image: postgres:{major}-alpine",
        "-      - database:/var/lib/postgresql/data",
        f"+      - database-pg{major}:{mount}",
        f"+  database-pg{major}:",
        "+    driver: local",
    ]
    volumes = YAML(typ="safe").load(after)["volumes"]
    assert "database" in volumes, "the old volume must stay declared until the user removes it"


def test_second_switch_is_idempotent(rendered: str) -> None:
    once = switch_compose(rendered, image="postgres:17-alpine", major=17)
    assert switch_compose(once, image="postgres:17-alpine", major=17) == once


def test_compose_without_a_database_mount_is_refused() -> None:
    text = "services:\n  postgresql:\n    image: postgres:16\n    volumes:\n      - ./x:/somewhere\n"
    with pytest.raises(ProjectError, match="mounts no volume at /var/lib/postgresql/data"):
        switch_compose(text, image="postgres:17", major=17)


def test_long_form_mount_is_understood(tmp_path: Path) -> None:
    text = (
        "services:\n  postgresql:\n    image: postgres:16\n    volumes:\n"
        "      - type: volume\n        source: pgdata\n        target: /var/lib/postgresql/data\n"
        "volumes:\n  pgdata: {}\n"
    )
    after = YAML(typ="safe").load(switch_compose(text, image="postgres:18", major=18))
    assert after["services"]["postgresql"]["volumes"] == ["database-pg18:/var/lib/postgresql"]
    assert set(after["volumes"]) == {"pgdata", "database-pg18"}
