"""`scaffold backup`: one archive holding everything a deployment needs to come back.

The database is dumped by the running PostgreSQL container's own `pg_dump` (a consistent snapshot
while authentik keeps serving), streamed out through the Docker API into a private, unlinked spool
file next to the archive; nothing is written inside the database volume. Then every file of the
project goes in (`.env`, answers, compose file, nginx/custom/, data/, certs/, custom-templates/,
letsencrypt/, git history), and a manifest with the size and SHA-256 of every member. See
`scaffold.archive` for the format and `scaffold.restore` for the way back.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from scaffold import output, pgdump
from scaffold.answers import load_answers
from scaffold.archive import (
    DATABASE,
    ArchiveWriter,
    Manifest,
    archive_name,
    archives_of,
    describe_size,
    project_paths,
    prune,
    utc_now,
)
from scaffold.dockerapi import connect
from scaffold.envfile import EnvDocument
from scaffold.envkeys import TAG
from scaffold.errors import UsageError
from scaffold.fsutil import refuse_symlink
from scaffold.layout import ProjectLayout
from scaffold.progress import Progress


@dataclass(frozen=True)
class BackupOptions:
    project_dir: Path
    output: Path | None = None
    keep: int | None = None


def default_archive_dir(layout: ProjectLayout) -> Path:
    """Inside the project, gitignored, never itself archived; neither it nor `.scaffold` may be a link
    (the archive holds `.env`, which would then land wherever the link points)."""
    for path in (layout.state_dir, layout.archives_dir):
        refuse_symlink(path)
    return layout.archives_dir


def _target(opts: BackupOptions, layout: ProjectLayout, project: str) -> Path:
    if opts.keep is not None and opts.keep < 1:
        raise UsageError(f"--keep {opts.keep}: keep at least 1 archive", hint="e.g. --keep 7")
    if opts.output is None:
        directory = default_archive_dir(layout)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return archive_name(project, directory)
    target = opts.output.expanduser().absolute()
    if target.is_dir():
        return archive_name(project, target)
    if target.exists() or target.is_symlink():
        raise UsageError(
            f"{target} exists; scaffold never overwrites an archive",
            hint="give a new file name, or a folder to put a time-stamped archive in",
        )
    if not target.parent.is_dir():
        raise UsageError(f"the folder {target.parent} does not exist", hint="create it first")
    return target


def _excluded(root: Path, target: Path, project: str) -> tuple[Path, ...]:
    """What must not go into the archive: the archive's own folder (or, in the root, older archives)."""
    if target.parent.resolve() != root.resolve():
        return (target.parent,)
    return tuple(archives_of(project, target.parent))


def run_backup(opts: BackupOptions) -> Path:
    """Write one archive; returns its path."""
    root = opts.project_dir
    layout = ProjectLayout(root)
    answers = load_answers(root)
    project = answers.project_name
    target = _target(opts, layout, project)
    env = EnvDocument.load(layout.env_file) if layout.env_file.is_file() else None
    api = connect()
    try:
        container = pgdump.database_container(
            api, project, problem="is not running, so there is no database to dump"
        )
        server = pgdump.server_info(api, container)
        output.status("info", f"backing up {root} (PostgreSQL {server.version}) to {target}")
        writer = ArchiveWriter(target)
        try:
            with tempfile.TemporaryFile(dir=target.parent) as spool:
                progress = Progress("database dump")
                size = pgdump.dump(api, container, spool, progress)
                progress.finish()
                output.status("ok", f"database dumped ({describe_size(size)})")
                spool.seek(0)
                writer.add_stream(DATABASE, spool, size)
            progress = Progress("project files")
            exclude = (*_excluded(root, target, project), writer.temp)
            for name, path in project_paths(root, exclude=exclude):
                writer.add_path(name, path, progress)
            progress.finish()
            manifest = Manifest(
                created=utc_now(),
                project=project,
                template_commit=answers.commit,
                authentik_tag=(env.get(TAG) if env else None) or answers.authentik_version,
                postgresql=server,
                members=tuple(writer.members),
            )
            writer.commit(manifest)
        except BaseException:
            writer.abort()
            raise
    finally:
        api.close()
    files = sum(1 for member in manifest.members if member.kind == "file")
    output.status(
        "ok",
        f"backup written: {target} ({describe_size(target.stat().st_size)}, {files} files, "
        f"{describe_size(manifest.total_bytes)} before compression)",
    )
    output.say(f"      restore with: scaffold restore {target} {root}")
    if opts.keep is not None:
        for path in prune(project, target.parent, opts.keep):
            output.status("info", f"removed old archive {path.name} (--keep {opts.keep})")
    return target
