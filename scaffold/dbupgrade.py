"""`scaffold db upgrade --to MAJOR`: move authentik's database to a newer PostgreSQL major.

A data directory only runs under the major that made it, and `pg_upgrade` needs both majors'
binaries side by side, which no official image has. So, as authentik's own guide does it: stop
authentik, dump with the old server's `pg_dump`, point the service at the new image and a NEW
volume, restore, check that every table has the same number of rows and that the encoding is
UTF8, start authentik. The old volume is kept until the user removes it (the command is printed):
going back is editing compose.yaml back. From PostgreSQL 18 the official image wants its volume
at /var/lib/postgresql (it refuses one at /var/lib/postgresql/data), so the mount follows the major.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaffold import composecli, output, pgdump
from scaffold.answers import load_answers
from scaffold.backup import database_container
from scaffold.dockerapi import DockerAPI, connect
from scaffold.errors import ProjectError, UsageError
from scaffold.fsutil import atomic_write_text, backup_file, exclusive_lock
from scaffold.layout import ProjectLayout

COMPOSE_FILE = "compose.yaml"
SERVICE = "postgresql"
#: Where the official image keeps its data: 18 moved the volume up one level (authentik #22016).
LAYOUT_CHANGE_MAJOR = 18
OLD_MOUNT, NEW_MOUNT = "/var/lib/postgresql/data", "/var/lib/postgresql"
OLDEST_SUPPORTED = 14  # authentik's minimum


@dataclass(frozen=True)
class UpgradeOptions:
    project_dir: Path
    to_major: int
    image: str | None = None


def default_image(major: int) -> str:
    return f"postgres:{major}-alpine"


def data_mount(major: int) -> str:
    return NEW_MOUNT if major >= LAYOUT_CHANGE_MAJOR else OLD_MOUNT


def volume_name(major: int) -> str:
    return f"database-pg{major}"


# --------------------------------------------------------------------------- compose.yaml


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, order, anchors and quotes stay as the user has them
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def switch_compose(text: str, *, image: str, major: int) -> str:
    """compose.yaml with the postgresql service on `image` and a new volume for `major`'s data.

    The old volume stays declared, so Compose keeps it (and `docker volume ls` shows it) until the
    user removes it.
    """
    yaml = _yaml()
    document = yaml.load(text)
    try:
        service = document["services"][SERVICE]
        mounts = service["volumes"]
    except (KeyError, TypeError):
        raise ProjectError(
            f"{COMPOSE_FILE} has no `{SERVICE}` service with volumes",
            hint="restore compose.yaml from git (`git checkout -- compose.yaml`), then run again",
        ) from None
    targets = [_mount_target(mount) for mount in mounts]
    index = next((i for i, target in enumerate(targets) if target in (OLD_MOUNT, NEW_MOUNT)), None)
    if index is None:
        raise ProjectError(
            f"the `{SERVICE}` service in {COMPOSE_FILE} mounts no volume at {OLD_MOUNT} or {NEW_MOUNT}",
            hint="mount the database volume there (as the template does), then run again",
        )
    old_volume = _mount_source(mounts[index])
    new_volume = volume_name(major)
    service["image"] = image
    mounts[index] = f"{new_volume}:{data_mount(major)}"
    volumes = document.setdefault("volumes", {})
    if new_volume not in volumes:
        settings = volumes.get(old_volume)
        volumes[new_volume] = dict(settings) if isinstance(settings, dict) else None
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def _mount_target(mount: Any) -> str | None:
    if isinstance(mount, str):
        parts = mount.split(":")
        return parts[1] if len(parts) >= 2 else None
    if isinstance(mount, dict):
        return mount.get("target")
    return None


def _mount_source(mount: Any) -> str:
    return mount.split(":")[0] if isinstance(mount, str) else str(mount.get("source", ""))


# --------------------------------------------------------------------------- the upgrade


def run_db_upgrade(opts: UpgradeOptions) -> None:
    if opts.to_major < OLDEST_SUPPORTED:
        raise UsageError(f"--to {opts.to_major}: authentik needs PostgreSQL {OLDEST_SUPPORTED} or newer")
    root = opts.project_dir
    layout = ProjectLayout(root)
    project = load_answers(root).project_name
    api = connect()
    try:
        container = database_container(api, project)
        current = pgdump.server_info(api, container)
        if current.major >= opts.to_major:
            than = "already" if current.major == opts.to_major else f"(newer than {opts.to_major})"
            output.status("ok", f"the database runs PostgreSQL {current.version} {than}: nothing to do")
            return
        image = opts.image or default_image(opts.to_major)
        found = pgdump.image_major(api, image)
        if found != opts.to_major:
            raise UsageError(
                f"the image {image} runs PostgreSQL {found}, not {opts.to_major}; nothing was changed",
                hint=f"give an image of PostgreSQL {opts.to_major} with --image",
            )
        with exclusive_lock(layout.lock_file):
            _upgrade(api, root, layout, project, container, image, opts.to_major, current.version)
    finally:
        api.close()


def _upgrade(
    api: DockerAPI, root: Path, layout: ProjectLayout, project: str, container: str,
    image: str, major: int, old_version: str,
) -> None:  # fmt: skip
    compose_path = root / COMPOSE_FILE
    original = compose_path.read_text(encoding="utf-8")
    changed = switch_compose(original, image=image, major=major)
    output.status("info", "stopping server and worker")
    composecli.compose(root, "stop", "server", "worker")
    try:
        before = pgdump.row_counts(api, container)
        with tempfile.TemporaryFile(dir=_private_dir(layout)) as dump:
            size = pgdump.dump(api, container, dump)
            output.status("ok", f"dumped PostgreSQL {old_version}: {len(before)} tables, {size} bytes")
            saved = backup_file(compose_path, layout.backups_dir, label="db-upgrade")
            atomic_write_text(compose_path, changed, mode=compose_path.stat().st_mode & 0o777)
            try:
                new = _restore_into_new_volume(api, root, project, dump, size, before)
            except BaseException:
                atomic_write_text(compose_path, original, mode=compose_path.stat().st_mode & 0o777)
                output.status("fail", f"upgrade failed: {COMPOSE_FILE} is back as it was, on the old volume")
                composecli.compose(root, "up", "-d", SERVICE)
                raise
    finally:
        composecli.compose(root, "up", "-d")
    old_volume = f"{project}_database"
    output.status("ok", f"PostgreSQL {old_version} -> {new}: every table has the same rows; encoding UTF8")
    output.say(f"      {COMPOSE_FILE} before the change: {saved / COMPOSE_FILE}")
    output.say(f"      the old volume is kept; once all works, remove it with: docker volume rm {old_volume}")


def _restore_into_new_volume(
    api: DockerAPI, root: Path, project: str, dump: Any, size: int, before: dict[str, int]
) -> str:
    output.status("info", "starting the new PostgreSQL on a new volume")
    composecli.compose(root, "up", "-d", "--wait", SERVICE)
    container = database_container(api, project)
    dump.seek(0)
    pgdump.restore(api, container, dump, size)
    info = pgdump.server_info(api, container)
    if info.encoding.upper() not in {"UTF8", "UTF-8"}:
        raise ProjectError(
            f"the new database uses encoding {info.encoding}; authentik needs UTF8",
            hint="use an image whose initdb creates UTF8 databases (LANG=C.UTF-8, as the official images)",
        )
    after = pgdump.row_counts(api, container)
    differences = [
        f"{table}: {before.get(table)} -> {after.get(table)}"
        for table in sorted(set(before) | set(after))
        if before.get(table) != after.get(table)
    ]
    if differences:
        raise ProjectError(
            "the restored database differs in row counts: " + "; ".join(differences[:10]),
            hint="nothing was lost: the old volume is untouched; report this with the output above",
        )
    return info.version


def _private_dir(layout: ProjectLayout) -> Path:
    layout.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return layout.state_dir
