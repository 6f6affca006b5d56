"""`scaffold restore ARCHIVE [DEST]`: a deployment back from one archive of `scaffold backup`.

Two cases:
- DEST is the deployment itself (it has an answers file): the database is replaced (only with
  `--yes` when it holds tables), then the files; server and worker are stopped meanwhile. The files
  it had are kept under `.scaffold/backups/<time>-pre-restore/`.
- DEST is empty or missing (a new machine): project, `.env` and data come back from the archive,
  PostgreSQL starts on a new volume, the dump goes in, then the whole stack starts, with the same
  secret key, the same users and the same certificates.

Nothing is changed before the whole archive was read and every member matched its manifest, and
before the target PostgreSQL is known to be of the archive's major version or newer (pg_restore
cannot go back to an older major).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from scaffold import composecli, output, pgdump
from scaffold.answers import ANSWERS_FILE, load_answers
from scaffold.archive import DATABASE, ArchiveError, Manifest, describe_size, extract, verify
from scaffold.dockerapi import DockerAPI, connect
from scaffold.fsutil import exclusive_lock, new_backup_dir
from scaffold.layout import ProjectLayout

STATE_DIR = ".scaffold"


@dataclass(frozen=True)
class RestoreOptions:
    archive: Path
    dest: Path
    yes: bool = False


def run_restore(opts: RestoreOptions) -> Path:
    """Restore; returns the project folder."""
    archive = opts.archive.expanduser().absolute()
    manifest = verify(archive)
    pg = manifest.postgresql
    output.status(
        "ok",
        f"archive checked: {len(manifest.members)} members match the manifest (project {manifest.project}, "
        f"made {manifest.created}, authentik {manifest.authentik_tag}, PostgreSQL {pg.version})",
    )
    dest = opts.dest.expanduser().absolute()
    api = connect()
    try:
        if (dest / ANSWERS_FILE).is_file():
            _restore_in_place(api, archive, manifest, dest, yes=opts.yes)
        else:
            _restore_fresh(api, archive, manifest, dest, yes=opts.yes)
    finally:
        api.close()
    return dest


# --------------------------------------------------------------------------- checks


def refuse_older_major(manifest: Manifest, target_major: int, where: str) -> None:
    if manifest.postgresql.major > target_major:
        raise ArchiveError(
            f"the archive holds a PostgreSQL {manifest.postgresql.major} database and {where} runs "
            f"PostgreSQL {target_major}: a dump cannot be restored into an older major; nothing was changed",
            hint=f"restore it into PostgreSQL {manifest.postgresql.major} or newer "
            f"(set the postgresql image in compose.yaml, e.g. postgres:{manifest.postgresql.major}-alpine)",
        )


def refuse_data_without_yes(api: DockerAPI, container: str, *, yes: bool, what: str) -> None:
    tables = pgdump.user_table_count(api, container)
    if tables and not yes:
        raise ArchiveError(
            f"{what} holds {tables} tables; restoring replaces them, so nothing was changed",
            hint="make a backup of it first (`scaffold backup`), then run the restore again with --yes",
        )


# --------------------------------------------------------------------------- onto the same deployment


def _restore_in_place(api: DockerAPI, archive: Path, manifest: Manifest, dest: Path, *, yes: bool) -> None:
    layout = ProjectLayout(dest)
    project = load_answers(dest).project_name
    if project != manifest.project and not yes:
        raise ArchiveError(
            f"the archive is of the project {manifest.project!r}, {dest} is {project!r}; nothing was changed",
            hint="check that this is the right archive; --yes restores it anyway",
        )
    container = api.service_container(project, "postgresql")
    if container is None:
        output.status("info", "starting postgresql to restore into it")
        composecli.compose(dest, "up", "-d", "--wait", "postgresql")
        container = _started_database(api, project)
    refuse_older_major(manifest, pgdump.server_info(api, container).major, f"the project {project!r}")
    refuse_data_without_yes(api, container, yes=yes, what=f"the database of {project!r}")
    with exclusive_lock(layout.lock_file), _private_dump_file(layout.state_dir) as dump:
        staging = Path(tempfile.mkdtemp(prefix="restore-", dir=layout.state_dir))
        try:
            extract(archive, staging, dump, manifest)
            _refuse_other_database_image(api, container, staging)
            _stopped_authentik(dest)
            try:
                _restore_database(api, container, dump, manifest)
                aside = new_backup_dir(layout.backups_dir, label="pre-restore")
                _swap_in(staging, dest, aside, top=True)
            finally:
                output.status("info", "starting the stack again")
                composecli.compose(dest, "up", "-d")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    output.status("ok", f"restored {archive.name} into {dest}; the files it replaced are in {aside}")


def _refuse_other_database_image(api: DockerAPI, container: str, staged: Path) -> None:
    """The restored compose.yaml must run the database the dump goes into (not, say, the volume
    of the PostgreSQL major used before a `scaffold db upgrade`)."""
    running, archived = api.container_image(container), composecli.service_image(staged, "postgresql")
    if running != archived:
        raise ArchiveError(
            f"the archive's compose.yaml runs PostgreSQL from {archived}, this deployment runs {running} "
            "(a `scaffold db upgrade` since the backup?); nothing was changed",
            hint="restore the archive into a new, empty folder instead (it brings its own database back)",
        )


def _stopped_authentik(dest: Path) -> None:
    output.status("info", "stopping server and worker while the database is replaced")
    composecli.compose(dest, "stop", "server", "worker")


def _swap_in(staged: Path, live: Path, aside: Path, *, top: bool = False) -> None:
    """Move `staged`'s tree over `live`, moving what it replaces (or lacks) to `aside`.

    Folders present on both sides are merged, not replaced, so bind mounts of running containers
    (nginx's letsencrypt/, conf.d/ ...) keep pointing at the folder that now holds the restored files.
    """
    names = {entry.name for entry in staged.iterdir()}
    for name in sorted(names):
        source, target = staged / name, live / name
        if top and name == STATE_DIR:
            state = source / "state.json"
            if state.is_file():
                os.replace(state, target / "state.json")
            continue
        if _is_real_dir(source) and _is_real_dir(target):
            _swap_in(source, target, aside / name)
            continue
        if target.exists() or target.is_symlink():
            aside.mkdir(parents=True, exist_ok=True)
            os.replace(target, aside / name)
        os.replace(source, target)
    for entry in sorted(live.iterdir()):
        if entry.name not in names and not (top and entry.name == STATE_DIR):
            aside.mkdir(parents=True, exist_ok=True)
            os.replace(entry, aside / entry.name)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


# --------------------------------------------------------------------------- onto a new machine


def _restore_fresh(api: DockerAPI, archive: Path, manifest: Manifest, dest: Path, *, yes: bool) -> None:
    project = manifest.project
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(
            f"{dest} is neither a generated project nor an empty folder; nothing was changed",
            hint="restore into a new folder, or into the deployment (the folder with .copier-answers.yml)",
        )
    if api.service_container(project, "postgresql") is not None:
        raise ArchiveError(
            f"a stack named {project!r} already runs on this Docker daemon; nothing was changed",
            hint="restore into that deployment's folder instead, or stop it (`docker compose down`) first",
        )
    if api.project_volume_exists(project, "database") and not yes:
        raise ArchiveError(
            f"the database volume of {project!r} already exists on this Docker daemon and would be "
            "restored over; nothing was changed",
            hint="back it up first if it matters, then run again with --yes "
            f"(or remove it: `docker volume rm {project}_database`)",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.restore-", dir=dest.parent))
    placed = False
    try:
        with _private_dump_file(dest.parent) as dump:
            extract(archive, staging, dump, manifest)
            image = composecli.service_image(staging, "postgresql")
            refuse_older_major(manifest, pgdump.image_major(api, image), f"the image {image}")
            if dest.exists():
                dest.rmdir()
            os.replace(staging, dest)
            placed = True
            output.status("ok", f"project files restored into {dest}")
            output.status("info", "starting postgresql on a new volume")
            composecli.compose(dest, "up", "-d", "--wait", "postgresql")
            container = _started_database(api, project)
            refuse_data_without_yes(api, container, yes=yes, what=f"the database volume of {project!r}")
            _restore_database(api, container, dump, manifest)
    finally:
        if not placed:
            shutil.rmtree(staging, ignore_errors=True)
    output.status("info", "starting the stack")
    composecli.compose(dest, "up", "-d")
    output.status("ok", f"restored {archive.name} into {dest}; authentik is starting (`docker compose ps`)")


# --------------------------------------------------------------------------- shared steps


@contextlib.contextmanager
def _private_dump_file(directory: Path) -> Iterator[BinaryIO]:
    """An unnamed 0600 file for the dump while it waits for the database (gone when closed)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory, prefix=f"scaffold-{secrets.token_hex(4)}-") as handle:
        yield handle  # type: ignore[misc]


def _started_database(api: DockerAPI, project: str) -> str:
    """The postgresql container `docker compose up --wait` has just started."""
    return pgdump.database_container(
        api, project, problem="did not start", hint="look at `docker compose logs postgresql`"
    )


def _restore_database(api: DockerAPI, container: str, dump: BinaryIO, manifest: Manifest) -> None:
    size = next(member.size for member in manifest.members if member.name == DATABASE)
    output.status("info", f"restoring the database ({describe_size(size)}, one transaction)")
    dump.flush()
    dump.seek(0)
    pgdump.restore(api, container, dump, size)
    output.status("ok", "database restored")
