"""Template migrations: changes to a generated project that a re-render cannot make.

copier runs the template's `_migrations` where it writes the update (the project, or the clone
of `scaffold update --dry-run`): once when an update crosses the version an entry is declared
for, on every update when it declares none. Each entry calls `python -m scaffold migrate <name>`
from the template's own checkout, so the code always matches the version that needs it:

    _migrations:
      - version: v2.0.0
        when: "{{ _stage == 'after' }}"
        command: >-
          PYTHONPATH={{ _copier_conf.src_path | quote }} {{ _copier_python | quote }}
          -P -m scaffold migrate <name>

Write each migration so that running it twice does no harm, give it a docstring that says
what the old shape was and what the new one is, and register it in MIGRATIONS. copier exposes
the versions involved as VERSION_FROM / VERSION_TO in the environment.

A migration must not act on Docker objects: `scaffold update --dry-run` runs copier, migrations
included, on a throwaway clone whose Compose project name is the real deployment's. Work on the
running stack (moving the database to a new PostgreSQL major) belongs to `scaffold update` after
copier (scaffold.update); `postgres_image_guard` only makes a plain `copier update` refuse it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from scaffold import output
from scaffold.errors import ProjectError, ScaffoldError

Migration = Callable[[Path], str]

#: Set by `scaffold update` while copier runs: scaffold, not copier, then moves the database.
DRIVER_ENV = "SCAFFOLD_UPDATE"
#: The compose file of the template version this code belongs to (the update's new version).
TEMPLATE_COMPOSE = Path(__file__).resolve().parents[1] / "template" / "compose.yaml.jinja"
_POSTGRES_IMAGE = re.compile(r"^  postgresql:\n(?:(?:    .*)?\n)*?    image: *(\S+)", re.MULTILINE)


def template_postgres_image(text: str) -> str | None:
    """The postgresql image in the template's compose.yaml.jinja (Jinja, so not parsed as YAML)."""
    match = _POSTGRES_IMAGE.search(text)
    return match.group(1).strip("\"'") if match else None


def postgres_image_guard(root: Path) -> str:
    """Refuse a plain `copier update` that moves the postgresql image to another PostgreSQL major.

    Old shape: compose.yaml runs PostgreSQL of one major, and the database volume holds that
    major's data files. New shape: the template's image is of another major, which cannot read
    them (the server refuses to start: nothing lost, but authentik down). Only `scaffold update`
    moves the data (dump, new volume, restore); copier alone would merge the new image over the
    old volume. Runs in the `before` stage, so a refusal leaves every file as it was.
    """
    from scaffold.dbupgrade import COMPOSE_FILE, compose_image, tag_major

    compose = root / COMPOSE_FILE
    old = compose_image(compose.read_text(encoding="utf-8")) if compose.is_file() else None
    new = template_postgres_image(TEMPLATE_COMPOSE.read_text(encoding="utf-8"))
    if old is None or new is None or old == new or _previous_template_image() == new:
        return "the postgresql image does not change"
    old_major, new_major = tag_major(old), tag_major(new)
    if old_major is not None and old_major == new_major:
        return f"postgresql {old} -> {new}: the same PostgreSQL major"
    if os.environ.get(DRIVER_ENV):
        return f"postgresql {old} -> {new}: scaffold update moves the database after copier"
    raise ProjectError(
        f"this template version runs postgresql from {new}, compose.yaml has {old}: a plain "
        "`copier update` would start a server of another PostgreSQL major on data it cannot read; "
        "nothing was changed",
        hint="update with `scaffold update` (of this template version or newer) instead: it keeps "
        "your database on its major, or moves it (dump, new volume, restore, verify) with --apply",
    )


def _previous_template_image() -> str | None:
    """The postgresql image of the version updated from (VERSION_FROM, a commit of this template's
    repository), when git can show it: the same image means copier's merge leaves the line alone."""
    from scaffold.gitutil import git

    commit = os.environ.get("VERSION_FROM")
    if not commit:
        return None
    try:
        text = git(TEMPLATE_COMPOSE.parents[1], "show", f"{commit}:template/compose.yaml.jinja").stdout
    except ScaffoldError:
        return None
    return template_postgres_image(text)


#: name -> function(project_dir) returning a one-line summary of what it did.
MIGRATIONS: dict[str, Migration] = {"postgres_image_guard": postgres_image_guard}


def run_migration(name: str, project_dir: Path | None = None) -> int:
    """Run one registered migration; an unknown name fails the update with a clear message."""
    migration = MIGRATIONS.get(name)
    if migration is None:
        known = ", ".join(sorted(MIGRATIONS)) or "none"
        output.error(
            f"unknown migration '{name}' (known: {known})", "update scaffold and the template together"
        )
        return 1
    root = (project_dir or Path.cwd()).resolve()
    try:
        summary = migration(root)
    except ScaffoldError as exc:
        output.error(f"migration {name}: {exc.message}", exc.hint)
        return 1
    versions = f"{os.environ.get('VERSION_FROM', '?')} -> {os.environ.get('VERSION_TO', '?')}"
    output.status("ok", f"migration {name} ({versions}): {summary}", stream=sys.stderr)
    return 0
