"""The `backup_schedule` answer: systemd units that run `scaffold backup` on the host.

Rendered only when asked for; checked by systemd's own parser (`systemd-analyze verify`), and a
schedule that could smuggle other directives into the unit is refused at the question.
(The command the unit runs is run for real in tests/e2e/test_e2e_backup.py.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.requirements import require
from tests.helpers.stack import generate

UNITS = ("scaffold-backup@.service", "scaffold-backup@.timer")


def verify(units: Path, project: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of the instance for `project`, as `systemctl enable` would name it."""
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed")
    instance = subprocess.run(
        ["systemd-escape", "--path", str(project)], capture_output=True, text=True, check=True
    ).stdout.strip()
    names = [str(units / unit.replace("@.", f"@{instance}.")) for unit in UNITS]
    return subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True, check=False)


def test_no_units_without_a_schedule(tmp_path: Path) -> None:
    project = generate(tmp_path / "p", {"project_name": "p"}, skip_tasks=True)
    assert not (project / "systemd").exists()


def test_units_verify_and_run_scaffold_backup_with_keep(tmp_path: Path) -> None:
    answers = {"project_name": "p", "backup_schedule": "*-*-* 03:30", "backup_keep": 5}
    project = generate(tmp_path / "my stack", answers, skip_tasks=True)
    units = project / "systemd"
    assert sorted(path.name for path in units.iterdir()) == sorted(UNITS)
    service = (units / UNITS[0]).read_text()
    assert "-m scaffold backup %f --keep 5\n" in service
    assert "OnCalendar=*-*-* 03:30\n" in (units / UNITS[1]).read_text()
    result = verify(units, project)
    assert result.returncode == 0, result.stderr

    (units / UNITS[1]).write_text((units / UNITS[1]).read_text().replace("*-*-* 03:30", "not a time"))
    assert verify(units, project).returncode != 0, "verify must catch a broken unit"


@pytest.mark.parametrize("schedule", ["daily\nExecStartPre=/bin/sh -c evil", "daily; reboot", "$(id)"])
def test_a_schedule_that_is_not_a_calendar_time_is_refused(tmp_path: Path, schedule: str) -> None:
    with pytest.raises(ValueError, match="not a systemd calendar time"):
        generate(tmp_path / "p", {"project_name": "p", "backup_schedule": schedule}, skip_tasks=True)
    assert not (tmp_path / "p" / "systemd").exists()
