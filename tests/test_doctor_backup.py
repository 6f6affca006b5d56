"""`files.backup-age`: doctor reports how old the newest `scaffold backup` archive is."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from scaffold.answers import Answers
from scaffold.doctor.backup import check_backup_age
from scaffold.doctor.core import Context

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    answers = Answers(project_name="demo", domain="sso.example.test", authentik_version="2026.8.7")
    return Context(root=tmp_path, answers=answers, offline=True, now=NOW)


def archive(ctx: Context, made: dt.datetime, project: str = "demo") -> None:
    folder = ctx.root / ".scaffold" / "archives"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{made:%Y%m%dT%H%M%SZ}-{project}.tar.gz").write_bytes(b"")


def test_no_archive_is_reported_with_the_command_that_makes_one(ctx: Context) -> None:
    outcome = check_backup_age(ctx)
    assert outcome.status == "skip" and ".scaffold/archives" in outcome.message
    assert f"scaffold backup {ctx.root}" in (outcome.fix or "")


def test_recent_archive_is_ok_with_its_age(ctx: Context) -> None:
    archive(ctx, NOW - dt.timedelta(days=5))
    archive(ctx, NOW - dt.timedelta(hours=9))
    outcome = check_backup_age(ctx)
    assert outcome.status == "ok"
    assert "is 9 h old (2 archive(s))" in outcome.message


def test_archive_older_than_two_days_warns(ctx: Context) -> None:
    archive(ctx, NOW - dt.timedelta(days=3, hours=1))
    archive(ctx, NOW - dt.timedelta(hours=1), project="another-stack")  # not this project's
    outcome = check_backup_age(ctx)
    assert outcome.status == "warn" and "3 days old" in outcome.message
    assert "scaffold backup" in (outcome.fix or "")
