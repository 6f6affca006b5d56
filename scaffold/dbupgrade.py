"""`scaffold db upgrade --to MAJOR`: move authentik's database to a newer PostgreSQL major.

A data directory only runs under the major that made it, and `pg_upgrade` needs both majors'
binaries side by side, which no official image has. So, as authentik's own guide does it: stop
authentik, dump with the old server's `pg_dump`, point the service at the new image and a NEW
volume, restore, check that every table has the same number of rows and that the encoding is
UTF8, start authentik. The old volume is kept until the user removes it (the command is printed):
going back is editing compose.yaml back. From PostgreSQL 18 the official image wants its volume
at /var/lib/postgresql (it refuses one at /var/lib/postgresql/data), so the mount follows the major.

When a template release moves the postgresql image to a new major, `scaffold update` asks
`template_move` what that means for this deployment: nothing when there is no database yet or the
major stays, otherwise compose.yaml keeps the image the data was made by (never a new server on old
data) and, with --apply, this upgrade runs with the template's new image.
"""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaffold import composecli, output, pgdump
from scaffold.answers import load_answers
from scaffold.dockerapi import DockerAPI, connect
from scaffold.errors import DockerUnavailable, ProjectError, UsageError
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

    @property
    def target_image(self) -> str:
        """The image given (`--image`), else the official alpine image of the target major."""
        return self.image or f"postgres:{self.to_major}-alpine"


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


def compose_image(text: str) -> str | None:
    """The postgresql service's `image:` in a compose file; None when it cannot be read (e.g. a
    file with merge-conflict markers)."""
    from ruamel.yaml import YAML, YAMLError

    try:
        image = YAML(typ="safe").load(text)["services"][SERVICE]["image"]
    except (YAMLError, KeyError, TypeError):
        return None
    return image if isinstance(image, str) else None


def database_mount(text: str) -> Any:
    """The postgresql service's data mount (short string or long-form mapping), if it has one."""
    from ruamel.yaml import YAML, YAMLError

    try:
        mounts = YAML(typ="safe").load(text)["services"][SERVICE]["volumes"]
        return next(m for m in mounts if _mount_target(m) in (OLD_MOUNT, NEW_MOUNT))
    except (YAMLError, KeyError, TypeError, StopIteration):
        return None


def database_volume(text: str) -> str | None:
    """The volume (as compose.yaml names it) holding the postgresql service's data, if it mounts one."""
    mount = database_mount(text)
    return None if mount is None else _mount_source(mount)


def pin_image(text: str, image: str, mount: Any = None) -> str:
    """compose.yaml with the postgresql service's `image:` set to `image` and, given `mount`, its data
    mount set back to it (a release moving to 18 also moves the mount to /var/lib/postgresql, where
    an older server would find no data and make an empty database); nothing else changes."""
    yaml = _yaml()
    document = yaml.load(text)
    service = document["services"][SERVICE]
    service["image"] = image
    mounts = service.get("volumes") or []
    index = next((i for i, m in enumerate(mounts) if _mount_target(m) in (OLD_MOUNT, NEW_MOUNT)), None)
    if mount is not None and index is not None and _mount_target(mounts[index]) != _mount_target(mount):
        mounts[index] = mount
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()


def tag_major(image: str) -> int | None:
    """16 from `postgres:16-alpine` or `postgres:16.4`; None when the tag names no version."""
    name = image.rsplit("/", 1)[-1].split("@")[0]
    match = re.fullmatch(r"[^:]+:(\d+)(?:[.-].*)?", name)
    return int(match.group(1)) if match else None


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
        container = pgdump.database_container(api, project)
        current = pgdump.server_info(api, container)
        if current.major >= opts.to_major:
            than = "already" if current.major == opts.to_major else f"(newer than {opts.to_major})"
            output.status("ok", f"the database runs PostgreSQL {current.version} {than}: nothing to do")
            return
        image = opts.target_image
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
    old_volume = f"{project}_{database_volume(original) or 'database'}"
    output.status("ok", f"PostgreSQL {old_version} -> {new}: every table has the same rows; encoding UTF8")
    output.say(f"      {COMPOSE_FILE} before the change: {saved / COMPOSE_FILE}")
    output.say(f"      the old volume is kept; once all works, remove it with: docker volume rm {old_volume}")


def _restore_into_new_volume(
    api: DockerAPI, root: Path, project: str, dump: Any, size: int, before: dict[str, int]
) -> str:
    output.status("info", "starting the new PostgreSQL on a new volume")
    composecli.compose(root, "up", "-d", "--wait", SERVICE)
    container = pgdump.database_container(api, project)
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


# --------------------------------------------------------------------------- a template that moves majors


@dataclass(frozen=True)
class TemplateMove:
    """What a template update's new postgresql image means for this deployment's database."""

    old_image: str
    new_image: str
    #: the major of the data (None: no database volume, the project never ran).
    data_major: int | None
    new_major: int | None
    #: why the data's major is unknown (Docker did not answer), if it is.
    unknown: str | None = None
    #: the data mount before the update (what compose.yaml keeps with the old image).
    old_mount: Any = field(default=None, compare=False)

    @property
    def needs_upgrade(self) -> bool:
        """The new image cannot run this data: compose.yaml must keep the old image until it moves."""
        if self.unknown is not None:
            return True
        if self.data_major is None:
            return False
        return self.new_major is None or self.new_major != self.data_major

    @property
    def is_upgrade(self) -> bool:
        """The data can move to the new image's (newer) major with `scaffold db upgrade`."""
        return (
            self.unknown is None
            and self.data_major is not None
            and self.new_major is not None
            and self.new_major > self.data_major
        )

    def describe(self, project_dir: Path, *, apply: bool, dry_run: bool = False) -> None:
        describe_move(project_dir, self, apply=apply, dry_run=dry_run)

    def keep_old_image(self, project_dir: Path) -> None:
        keep_old_image(project_dir, self)


def plan_template_move(project_dir: Path, old_text: str, new_text: str) -> TemplateMove | None:
    """None when the update leaves the postgresql image alone (or compose.yaml cannot be read).

    Read-only: it lists volumes, asks the running server its version and, when an image's tag
    names no major, runs `postgres --version` in a throw-away container. So a dry run may call it.
    """
    move = _plan(project_dir, old_text, new_text)
    return None if move is None else replace(move, old_mount=database_mount(old_text))


def _plan(project_dir: Path, old_text: str, new_text: str) -> TemplateMove | None:
    old_image, new_image = compose_image(old_text), compose_image(new_text)
    if old_image is None or new_image is None or old_image == new_image:
        return None
    volume = database_volume(old_text) or "database"
    try:
        api = connect()
    except DockerUnavailable as exc:
        return TemplateMove(old_image, new_image, tag_major(old_image), tag_major(new_image), exc.message)
    try:
        project = load_answers(project_dir).project_name
        container = api.service_container(project, SERVICE)
        if container is not None:
            data_major: int | None = pgdump.server_info(api, container).major
        elif api.project_volume_exists(project, volume):
            data_major = tag_major(old_image) or pgdump.image_major(api, old_image)
        else:
            return TemplateMove(old_image, new_image, None, tag_major(new_image))
        new_major = tag_major(new_image) or pgdump.image_major(api, new_image)
        return TemplateMove(old_image, new_image, data_major, new_major)
    except DockerUnavailable as exc:
        return TemplateMove(old_image, new_image, None, tag_major(new_image), exc.message)
    finally:
        api.close()


def keep_old_image(project_dir: Path, move: TemplateMove) -> None:
    """compose.yaml back on the image the data was made by: `docker compose up` stays safe."""
    path = project_dir / COMPOSE_FILE
    text = path.read_text(encoding="utf-8")
    pinned = pin_image(text, move.old_image, move.old_mount)
    atomic_write_text(path, pinned, mode=path.stat().st_mode & 0o777)


def describe_move(project_dir: Path, move: TemplateMove, *, apply: bool, dry_run: bool = False) -> None:
    """Say what the update does (or, in a dry run, would do) about the database."""
    keeps = "would keep" if dry_run else "keeps"
    moving = f"PostgreSQL {move.data_major} -> {move.new_major} ({move.old_image} -> {move.new_image})"
    if not move.needs_upgrade:
        why = "no database volume yet" if move.data_major is None else f"the same major {move.data_major}"
        output.status("info", f"postgresql {'would take' if dry_run else 'takes'} {move.new_image} ({why})")
    elif move.is_upgrade and apply:
        how = "--apply would move" if dry_run else "moving"
        output.status(
            "info",
            f"the template moves the database {moving}: {how} it "
            "(dump, new volume, restore, verify; the old volume is kept)",
        )
    elif move.is_upgrade:
        output.status(
            "info",
            f"the template moves the database {moving}: compose.yaml {keeps} {move.old_image} until the "
            f"database is moved; move it{' (or update with --apply)' if dry_run else ''} with:",
        )
        output.say(f"      {upgrade_command(project_dir, move)}")
    elif move.unknown is not None:
        output.status(
            "warn",
            f"the template moves postgresql from {move.old_image} to {move.new_image}, and Docker did not "
            f"answer ({move.unknown}), so scaffold cannot tell whether a database exists: compose.yaml "
            f"{keeps} {move.old_image}; once Docker answers, move it with (or, if the stack never ran, "
            "set the image yourself):",
        )
        output.say(f"      {upgrade_command(project_dir, move)}")
    else:
        output.status(
            "warn",
            f"the template's {move.new_image} runs PostgreSQL {move.new_major}, older than the database's "
            f"{move.data_major}: compose.yaml {keeps} {move.old_image}",
        )


def upgrade_command(project_dir: Path, move: TemplateMove) -> str:
    import shlex

    major = move.new_major if move.new_major is not None else "MAJOR"
    return (
        f"scaffold db upgrade --to {major} --image {shlex.quote(move.new_image)} "
        f"{shlex.quote(str(project_dir))}"
    )


def apply_template_move(project_dir: Path, move: TemplateMove) -> None:
    """The database onto the template's new image: `scaffold db upgrade` with that image."""
    if move.new_major is None:
        raise ProjectError(
            f"cannot tell which PostgreSQL major {move.new_image} runs",
            hint=f"move the database yourself: {upgrade_command(project_dir, move)}",
        )
    run_db_upgrade(UpgradeOptions(project_dir=project_dir, to_major=move.new_major, image=move.new_image))
