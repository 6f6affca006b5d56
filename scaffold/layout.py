"""Where things live in a generated project, named once.

Everything scaffold writes besides `.env` goes under `.scaffold/` (gitignored): the lock,
the record of values scaffold wrote, backups, and the SMTP password hand-off from copier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import overload

#: The authentik image runs as this user and must be able to write ./data.
AUTHENTIK_UID = 1000
#: Bind-mounted folders that Docker would otherwise create as root-owned on the first `up`.
DATA_DIRS = ("data", "certs", "custom-templates", "letsencrypt")


#: The folder of everything scaffold writes besides `.env`.
STATE_DIR = ".scaffold"


class _Path:
    """A project path as a read-only attribute: `layout.x` is `layout.root` joined with the parts."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    @overload
    def __get__(self, layout: None, owner: type) -> _Path: ...
    @overload
    def __get__(self, layout: ProjectLayout, owner: type) -> Path: ...
    def __get__(self, layout: ProjectLayout | None, owner: type) -> Path | _Path:
        return self if layout is None else layout.root.joinpath(*self.parts)


@dataclass(frozen=True)
class ProjectLayout:
    root: Path

    env_file = _Path(".env")
    answers_file = _Path(".copier-answers.yml")
    state_dir = _Path(STATE_DIR)
    lock_file = _Path(STATE_DIR, "lock")
    #: Held by `scaffold update` for its whole run; its detection step takes `lock_file` in a child.
    update_lock_file = _Path(STATE_DIR, "update.lock")
    state_file = _Path(STATE_DIR, "state.json")
    backups_dir = _Path(STATE_DIR, "backups")
    #: Rendered by plain copier when an SMTP password was answered; read, deleted, put in `.env`.
    #: `scaffold new` and `scaffold update` never let copier render it: they pass the password in memory.
    smtp_handoff = _Path(STATE_DIR, "smtp-password")
    #: The DNS provider's secret, handed over by plain copier like `smtp_handoff`.
    dns_secret_handoff = _Path(STATE_DIR, "dns-secret")
    #: certbot's DNS credentials file (scaffold/dnscreds.py), derived from `.env`.
    dns_credentials = _Path(STATE_DIR, "dns", "credentials.ini")
    #: Where `scaffold backup` puts its archives by default (they hold `.env`: private).
    archives_dir = _Path(STATE_DIR, "archives")

    def scaffold_paths(self) -> tuple[Path, ...]:
        """Every path scaffold writes in the project: none of them may be a symbolic link."""
        return (
            self.env_file,
            self.state_dir,
            self.lock_file,
            self.update_lock_file,
            self.state_file,
            self.backups_dir,
            self.archives_dir,
            self.smtp_handoff,
            self.dns_secret_handoff,
            self.dns_credentials.parent,
            self.dns_credentials,
        )

    def ensure_data_dirs(self) -> list[str]:
        """Create the bind-mounted folders, `data/` writable by authentik's user when we can."""
        created = []
        for name in DATA_DIRS:
            path = self.root / name
            if not path.exists() and not path.is_symlink():  # a link to a bigger disk is the user's choice
                path.mkdir(parents=True)
                created.append(name)
                if name == "data" and os.geteuid() == 0:
                    os.chown(path, AUTHENTIK_UID, AUTHENTIK_UID)
        return created
