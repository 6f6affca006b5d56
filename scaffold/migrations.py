"""Template migrations: changes to a generated project that a re-render cannot make.

copier runs the template's `_migrations` once, in the real project, when an update crosses
the version they are declared for. Each entry calls `python -m scaffold migrate <name>` from
the template's own checkout, so the code always matches the version that needs it:

    _migrations:
      - version: v2.0.0
        when: "{{ _stage == 'after' }}"
        command: >-
          PYTHONPATH={{ _copier_conf.src_path | quote }} {{ _copier_python | quote }}
          -P -m scaffold migrate <name>

Write each migration so that running it twice does no harm, give it a docstring that says
what the old shape was and what the new one is, and register it in MIGRATIONS. copier exposes
the versions involved as VERSION_FROM / VERSION_TO in the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from scaffold import output

Migration = Callable[[Path], str]

#: name -> function(project_dir) returning a one-line summary of what it did.
MIGRATIONS: dict[str, Migration] = {}


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
    summary = migration(root)
    versions = f"{os.environ.get('VERSION_FROM', '?')} -> {os.environ.get('VERSION_TO', '?')}"
    output.status("ok", f"migration {name} ({versions}): {summary}", stream=sys.stderr)
    return 0
