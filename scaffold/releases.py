"""authentik's release lines and upgrade rules, as scaffold applies them.

authentik publishes YEAR.MONTH.PATCH releases; a release line is YEAR.MONTH. Its upgrade
rules: no downgrades, and go through every release line in order (to the latest patch of
each). This template needs 2025.12 or newer: it mounts ./data (the /media -> /data move).
`check_upgrade` is the one place those rules are applied, however the new version arrives
(`scaffold update --authentik X` or `--data authentik_version=X`). The default release of new
stacks is copier.yml's `authentik_version` default; tests keep copier.yml's validator in step with
OLDEST_SUPPORTED.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scaffold.answer_rules import OLDEST_AUTHENTIK
from scaffold.errors import ProjectError, UsageError

#: Release lines in order, as published in authentik's release notes. A line newer than the
#: last one here is accepted (the list cannot know the future) with a note.
KNOWN_LINES: tuple[tuple[int, int], ...] = (
    (2025, 2),
    (2025, 4),
    (2025, 6),
    (2025, 8),
    (2025, 10),
    (2025, 12),
    (2026, 2),
    (2026, 5),
    (2026, 8),
    (2026, 11),
)
#: The oldest line this template's compose file works with (the question's rule owns it).
OLDEST_SUPPORTED: tuple[int, int] = OLDEST_AUTHENTIK

_VERSION = re.compile(r"^(20\d\d)\.(\d{1,2})\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    year: int
    month: int
    patch: int

    @property
    def line(self) -> tuple[int, int]:
        return (self.year, self.month)

    def __str__(self) -> str:
        return f"{self.year}.{self.month}.{self.patch}"


def line_name(line: tuple[int, int]) -> str:
    return f"{line[0]}.{line[1]}"


def parse_version(text: str) -> Version:
    match = _VERSION.match(text.strip())
    if not match:
        raise UsageError(
            f"'{text}' is not an authentik release",
            hint="use the YEAR.MONTH.PATCH form of authentik's tags, e.g. 2026.8.7 (no 'latest', no rc)",
        )
    return Version(*(int(part) for part in match.groups()))


def skipped_lines(current: Version, target: Version) -> list[str]:
    """The known release lines strictly between the current and the target line."""
    return [line_name(line) for line in KNOWN_LINES if current.line < line < target.line]


def is_supported(version: Version) -> bool:
    return version.line >= OLDEST_SUPPORTED


def is_known_line(version: Version) -> bool:
    return version.line in KNOWN_LINES


def check_upgrade(current_text: str, target_text: str, *, yes: bool) -> list[str]:
    """authentik's upgrade rules from the stack's release to `target_text`; returns warnings to show.

    Refused: a target that is no release, older than the running one, or older than this template
    supports; skipping a release line unless `yes`.
    """
    target = parse_version(target_text)
    current = parse_version(current_text)
    if target < current:
        raise ProjectError(
            f"authentik {target} is older than the running {current}: authentik does not support downgrades",
            hint="restore the database backup taken before the upgrade if you must go back",
        )
    if not is_supported(target):
        oldest = line_name(OLDEST_SUPPORTED)
        raise UsageError(
            f"authentik {target} is older than this template supports ({oldest})",
            hint=f"pick {oldest} or newer",
        )
    warnings = []
    skipped = skipped_lines(current, target)
    if skipped:
        message = (
            f"going from {current} to {target} skips the release line(s) {', '.join(skipped)}; authentik's "
            "upgrade notes say to upgrade through every line in order, to its latest patch"
        )
        if not yes:
            raise ProjectError(
                message,
                hint=f"upgrade to each skipped line first (e.g. --authentik {skipped[0]}.<latest patch>), "
                "or pass --yes to accept the risk",
            )
        warnings.append(message)
    if not is_known_line(target):
        warnings.append(
            f"{target.year}.{target.month} is newer than the release lines scaffold knows: "
            "read its release notes"
        )
    return warnings
