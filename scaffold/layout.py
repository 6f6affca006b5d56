"""Where things live in a generated project, named once.

Everything scaffold writes besides `.env` goes under `.scaffold/` (gitignored): the lock,
the record of values scaffold wrote, backups, and the SMTP password hand-off from copier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The authentik image runs as this user and must be able to write ./data.
AUTHENTIK_UID = 1000
#: Bind-mounted folders that Docker would otherwise create as root-owned on the first `up`.
DATA_DIRS = ("data", "certs", "custom-templates", "letsencrypt")


@dataclass(frozen=True)
class ProjectLayout:
    root: Path

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    @property
    def answers_file(self) -> Path:
        return self.root / ".copier-answers.yml"

    @property
    def state_dir(self) -> Path:
        return self.root / ".scaffold"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "lock"

    @property
    def update_lock_file(self) -> Path:
        """Held by `scaffold update` for its whole run; its detection step takes `lock_file` in a child."""
        return self.state_dir / "update.lock"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def backups_dir(self) -> Path:
        return self.state_dir / "backups"

    @property
    def smtp_handoff(self) -> Path:
        """Rendered by plain copier when an SMTP password was answered; read, deleted, put in `.env`.

        `scaffold new` and `scaffold update` never let copier render it: they pass the password in memory.
        """
        return self.state_dir / "smtp-password"

    @property
    def dns_secret_handoff(self) -> Path:
        """The DNS provider's secret, handed over by plain copier like `smtp_handoff`."""
        return self.state_dir / "dns-secret"

    @property
    def dns_credentials(self) -> Path:
        """certbot's DNS credentials file (scaffold/dnscreds.py), derived from `.env`."""
        return self.state_dir / "dns" / "credentials.ini"

    @property
    def archives_dir(self) -> Path:
        """Where `scaffold backup` puts its archives by default (they hold `.env`: private)."""
        return self.state_dir / "archives"

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
