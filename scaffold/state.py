"""What scaffold last wrote into `.env`, so a later run can tell a user's edit from its own.

For values that come from answers (the authentik tag, the SMTP settings), a value that still
equals what scaffold wrote may follow a changed answer; a value the user changed is theirs.
Secrets are never recorded here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from scaffold.fsutil import atomic_write_text, read_bytes_no_follow


@dataclass
class ScaffoldState:
    written: dict[str, str] = field(default_factory=dict)
    subnet_unverified: bool = False

    @classmethod
    def load(cls, path: Path) -> ScaffoldState:
        try:
            data = json.loads(read_bytes_no_follow(path) or b"{}")
        except (OSError, ValueError):  # a link is refused (EnvFileError), not read
            return cls()
        if not isinstance(data, dict):
            return cls()
        written = data.get("written") if isinstance(data.get("written"), dict) else {}
        return cls(
            written={str(k): str(v) for k, v in written.items()},
            subnet_unverified=bool(data.get("subnet_unverified", False)),
        )

    def save(self, path: Path) -> None:
        payload = {"written": dict(sorted(self.written.items())), "subnet_unverified": self.subnet_unverified}
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(payload, indent=2) + "\n", mode=0o600)
