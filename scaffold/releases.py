"""authentik's release lines and upgrade rules, as scaffold applies them.

authentik publishes YEAR.MONTH.PATCH releases; a release line is YEAR.MONTH. Its upgrade
rules: no downgrades, and go through every release line in order (to the latest patch of
each). This template needs 2025.12 or newer: it mounts ./data (the /media -> /data move).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scaffold.errors import UsageError

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
#: The oldest line this template's compose file works with.
OLDEST_SUPPORTED: tuple[int, int] = (2025, 12)
#: The authentik release new stacks get (the newest stable release confirmed in the notes).
DEFAULT_VERSION = "2026.8.7"

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
