"""Doctor check of backups: how old the newest `scaffold backup` archive of the project is.

authentik's migrations are one-way and its secret key lives only in `.env`: a deployment without a
recent archive cannot go back after a failed upgrade or a lost disk. Doctor looks where
`scaffold backup` writes by default (`.scaffold/archives/`); archives written elsewhere with
`--output` are not seen, and the message says where it looked.
"""

from __future__ import annotations

import datetime as dt
import re

from scaffold.archive import archives_of, describe_age
from scaffold.backup import default_archive_dir
from scaffold.doctor.core import Check, Context, Outcome, ok, skip, warn

#: A nightly backup that is older than this missed at least one night.
STALE_AFTER = dt.timedelta(days=2)
_STAMP = re.compile(r"^(\d{8}T\d{6}Z)-")


def check_backup_age(ctx: Context) -> Outcome:
    directory = default_archive_dir(ctx.layout)
    archives = archives_of(ctx.project, directory) if directory.is_dir() else []
    fix = f"scaffold backup {ctx.root} (and nightly: README, 'Backups and restore')"
    if not archives:
        return skip(f"no archive of `scaffold backup` in {directory} yet", fix)
    newest = archives[-1]
    made = dt.datetime.strptime(_STAMP.match(newest.name).group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    age = ctx.now - made
    message = f"newest backup {newest.name} is {describe_age(age)} old ({len(archives)} archive(s))"
    if age > STALE_AFTER:
        return warn(message + ": changes since then would be lost", fix)
    return ok(message)


CHECKS = (Check("files.backup-age", check_backup_age),)
