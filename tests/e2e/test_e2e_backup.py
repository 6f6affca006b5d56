"""Issue 16, end to end: `scaffold backup`, `restore` and `db upgrade` on one real stack.

One stack per module (stand-in images, pebble certificate, `backup_schedule=daily`), on the OLDER
PostgreSQL stand-in (Debian bookworm's 15) so that `scaffold db upgrade` can move it to the newer
one (trixie's 17). Its database gets a seeded table of 10,000 rows and its `data/` media files. The
tests run in file order: a backup while a client keeps requesting through nginx, what the archive
holds, doctor's view of it, then each refusal (a truncated archive, a member whose checksum
differs, an archive from a newer PostgreSQL major, a database with data and no `--yes`) with the
project tree and the database compared before and after, a restore in place with `--yes`, the
major upgrade (and a second run with nothing to do), the round trip (`docker compose down -v`, the
project folder deleted, `scaffold restore` into a new folder, and the same table, files, secrets,
healthy services and certificate), and last what the scheduled-backup unit of the restored stack
runs, with its `--keep`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.clients import LOAD_LOOP, served_certificate
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, OVERRIDE, REPO_ROOT, Stack, docker, running_stack, unique_name

pytestmark = pytest.mark.docker

SERVICES = ("postgresql", "server", "worker", "nginx", "certbot")
SEED_ROWS = 10_000
SEED_SQL = (
    "CREATE TABLE scaffold_seed AS SELECT g AS id, md5(g::text) AS value "
    f"FROM generate_series(1, {SEED_ROWS}) g"
)
CHECKSUM_SQL = (
    "SELECT count(*) || ':' || md5(string_agg(id || '=' || value, ',' ORDER BY id)) FROM scaffold_seed"
)
TABLES_SQL = (
    "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
    "WHERE table_schema = 'public'"
)
KEEP = 2  # backup_keep: archives the scheduled backup keeps
MEDIA = {"media/logo.png": 300_000, "media/public/flow-bg.jpg": 120_000, "media/notes.txt": 1_000}


# --------------------------------------------------------------------------- helpers


def scaffold(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with this checkout's code and the stack's test override file."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMPOSE_FILE": f"compose.yaml:{OVERRIDE}"}
    return subprocess.run(
        [sys.executable, "-P", "-m", "scaffold", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False,
    )  # fmt: skip


def sql(stack: Stack, query: str) -> str:
    return stack.exec(
        "postgresql", "psql", "-X", "-A", "-t", "-U", "authentik", "-d", "authentik", "-c", query
    ).stdout.strip()


def database_state(stack: Stack) -> tuple[str, str]:
    """(tables of the public schema, count and checksum of the seeded table)."""
    return sql(stack, TABLES_SQL), sql(stack, CHECKSUM_SQL)


def tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under `root`: (mode, uid, gid, SHA-256 of a file or target of a link).

    Only `.scaffold/lock` is left out: it says which scaffold run holds the lock, nothing else.
    """
    result = {}
    for path in sorted(root.rglob("*")):
        if path == root / ".scaffold" / "lock":
            continue
        info = path.lstat()
        if path.is_symlink():
            content = "-> " + os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = "dir"
        result[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, content)
    return result


def rewrite(archive: Path, target: Path, change: Callable[[tarfile.TarInfo, bytes], bytes]) -> Path:
    """A copy of `archive` whose members' contents went through `change` (the manifest too)."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for info in source:
            data = source.extractfile(info).read() if info.isreg() else b""
            if info.isreg():
                data = change(info, data)
                info.size = len(data)
            out.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return target


def manifest_of(archive: Path) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        return json.loads(tar.extractfile("manifest.json").read())


# --------------------------------------------------------------------------- the one stack


def use_older_postgres(stack: Stack) -> None:
    """The compose file's own `image:` of postgresql becomes the older stand-in (not the override's),
    so that `scaffold db upgrade` can change it as it would change `postgres:16-alpine`."""
    compose = stack.dir / "compose.yaml"
    text = compose.read_text()
    assert "image: postgres:16-alpine" in text
    compose.write_text(text.replace("image: postgres:16-alpine", f"image: {stack.images.postgres_older}"))
    override = json.loads((stack.dir / OVERRIDE).read_text())
    del override["services"]["postgresql"]
    (stack.dir / OVERRIDE).write_text(json.dumps(override, indent=2))


def major(stack: Stack) -> int:
    return int(sql(stack, "SHOW server_version_num")) // 10000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """A running stack on the older PostgreSQL, a pebble certificate, a seeded table, media files."""
    answers = {"backup_schedule": "daily", "backup_keep": KEEP}
    with running_stack(tmp_path_factory.mktemp("backup"), standin_images, answers) as stack:
        use_older_postgres(stack)
        for name, size in MEDIA.items():
            path = stack.dir / "data" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
        for path in [stack.dir / "data", *(stack.dir / "data").rglob("*")]:
            os.chown(path, 1000, 1000)
        stack.up()
        stack.wait_healthy(SERVICES)
        wait_for(
            lambda: "Pebble" in served_certificate(stack).issuer.rfc4514_string(),
            "the pebble certificate served by nginx",
            timeout=120,
        )
        sql(stack, SEED_SQL)
        yield stack
    # `down -v` removes only the volumes services use: the one `db upgrade` keeps goes here.
    docker("volume", "rm", "-f", f"{stack.project}_database", check=False)


@pytest.fixture(scope="module")
def backup_under_load(stack: Stack) -> tuple[Path, subprocess.CompletedProcess[str], dict]:
    """`scaffold backup` while a client keeps requesting through nginx; (archive, run, load report)."""
    nginx_ip = stack.nginx_address()
    stop = f"/tmp/stop-{unique_name('b')}"
    loop = subprocess.Popen(
        ["docker", "exec", stack.start_client(), "python3", "-c", LOAD_LOOP,
         nginx_ip, DOMAIN, stack.public_host, stop, "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        run = scaffold("backup", str(stack.dir))
        time.sleep(1)
    finally:
        stack.client("touch", stop, check=False)
        out, err = loop.communicate(timeout=60)
    assert loop.returncode == 0, f"load loop crashed: {err}"
    assert run.returncode == 0, f"backup failed:\n{run.stdout}\n{run.stderr}"
    archives = sorted((stack.dir / ".scaffold" / "archives").glob("*.tar.gz"))
    assert len(archives) == 1, archives
    return archives[0], run, json.loads(out)


# --------------------------------------------------------------------------- backup


def test_backup_while_serving_fails_no_request(backup_under_load) -> None:
    _, _, load = backup_under_load
    print(f"\n[backup] load loop: {load['ok']} ok, {load['failed']} failed in {load['seconds']:.1f} s")
    assert load["failed"] == 0, f"requests failed during the backup: {load['failures']}"
    assert load["ok"] >= 20, f"only {load['ok']} requests: the loop did not run alongside the backup"


def test_archive_is_private_and_lists_every_member_with_its_checksum(stack: Stack, backup_under_load) -> None:
    archive, run, _ = backup_under_load
    assert archive.stat().st_mode & 0o777 == 0o600
    manifest = manifest_of(archive)
    names = {member["name"] for member in manifest["members"]}
    for needed in ("database.pgdump", "project/.env", "project/.copier-answers.yml", "project/compose.yaml",
                   "project/nginx/custom/site-root.conf", *(f"project/data/{name}" for name in MEDIA),
                   f"project/letsencrypt/live/{DOMAIN}/fullchain.pem"):  # fmt: skip
        assert needed in names, f"{needed} is not in the archive"
    assert not any(name.startswith("project/.scaffold/archives") for name in names)
    media = next(m for m in manifest["members"] if m["name"] == "project/data/media/logo.png")
    assert media["sha256"] == hashlib.sha256((stack.dir / "data/media/logo.png").read_bytes()).hexdigest()
    assert manifest["postgresql"]["major"] >= 15 and manifest["postgresql"]["encoding"] == "UTF8"
    assert manifest["authentik_tag"] == stack.env()["AUTHENTIK_TAG"]
    assert manifest["project"] == stack.project
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getnames()[0] == "database.pgdump" and tar.getnames()[-1] == "manifest.json"
        env_member = tar.getmember("project/.env")
        assert env_member.mode & 0o077 == 0
    secrets = [v for k, v in stack.env().items() if k in ("PG_PASS", "AUTHENTIK_SECRET_KEY") and v]
    assert secrets and not any(s in run.stdout + run.stderr for s in secrets)
    leftovers = [p.name for p in archive.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left next to the archive: {leftovers}"


def test_doctor_reports_the_age_of_the_new_backup(stack: Stack, backup_under_load) -> None:
    run = scaffold("doctor", str(stack.dir), "--offline", "--json")
    check = next(c for c in json.loads(run.stdout)["checks"] if c["id"] == "files.backup-age")
    assert check["status"] == "ok" and backup_under_load[0].name in check["message"], check


# --------------------------------------------------------------------------- refusals


def assert_refused_unchanged(stack: Stack, archive: Path, *expected: str) -> str:
    """`scaffold restore archive stack.dir` fails with each `expected` in its message, changing nothing."""
    files, database = tree(stack.dir), database_state(stack)
    run = scaffold("restore", str(archive), str(stack.dir))
    assert run.returncode == 1, f"not refused:\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr
    for text in expected:
        assert text in run.stderr, run.stderr
    assert tree(stack.dir) == files, "the project tree changed"
    assert database_state(stack) == database, "the database changed"
    assert all(stack.health(s) == "healthy" for s in ("server", "worker")), "server or worker was stopped"
    return run.stderr


def test_truncated_archive_is_refused_before_anything_changes(
    stack: Stack, backup_under_load, tmp_path: Path
) -> None:
    archive = backup_under_load[0]
    cut = tmp_path / "truncated.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    assert_refused_unchanged(stack, cut, "truncated or damaged", "nothing was changed")


def test_member_with_another_checksum_is_refused(stack: Stack, backup_under_load, tmp_path: Path) -> None:
    def flip(info: tarfile.TarInfo, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if info.name == "project/data/media/notes.txt" else data

    altered = rewrite(backup_under_load[0], tmp_path / "altered.tar.gz", flip)
    assert_refused_unchanged(
        stack, altered, "does not match its manifest", "data/media/notes.txt has a different SHA-256"
    )


def test_archive_from_a_newer_postgresql_major_is_refused(
    stack: Stack, backup_under_load, tmp_path: Path
) -> None:
    current = manifest_of(backup_under_load[0])["postgresql"]["major"]

    def newer(info: tarfile.TarInfo, data: bytes) -> bytes:
        if info.name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest["postgresql"].update(major=current + 1, version=f"{current + 1}.0")
        return json.dumps(manifest).encode()

    archive = rewrite(backup_under_load[0], tmp_path / "newer.tar.gz", newer)
    assert_refused_unchanged(
        stack, archive, f"PostgreSQL {current + 1} database", f"runs PostgreSQL {current}"
    )


def test_restore_over_a_database_with_data_needs_yes(stack: Stack, backup_under_load) -> None:
    assert_refused_unchanged(stack, backup_under_load[0], "tables", "--yes")


def test_restore_in_place_with_yes_brings_back_rows_and_files(stack: Stack, backup_under_load) -> None:
    seeded = database_state(stack)
    notes = stack.dir / "data/media/notes.txt"
    original = notes.read_bytes()
    server_started = stack.inspect("server")["State"]["StartedAt"]
    sql(stack, "DELETE FROM scaffold_seed WHERE id % 2 = 0")
    notes.write_bytes(b"changed after the backup")
    (stack.dir / "data/media/new.txt").write_text("made after the backup")

    run = scaffold("restore", str(backup_under_load[0]), str(stack.dir), "--yes")
    assert run.returncode == 0, f"restore failed:\n{run.stdout}\n{run.stderr}"
    assert database_state(stack) == seeded
    assert notes.read_bytes() == original
    assert not (stack.dir / "data/media/new.txt").exists()
    aside = list((stack.dir / ".scaffold/backups").glob("*-pre-restore/data/media/new.txt"))
    assert len(aside) == 1, "the file the archive lacked was not kept aside"
    assert stack.inspect("server")["State"]["StartedAt"] != server_started, "server was not stopped"
    stack.wait_healthy(SERVICES)


def test_db_upgrade_to_the_newer_major_keeps_every_row_and_the_old_volume(stack: Stack) -> None:
    before, old_major = database_state(stack), major(stack)
    old_volume = f"{stack.project}_database"
    run = scaffold("db", "upgrade", "--to", "17", "--image", stack.images.postgres, str(stack.dir))
    assert run.returncode == 0, f"upgrade failed:\n{run.stdout}\n{run.stderr}"
    print(f"\n[db upgrade] {run.stdout}")
    assert (old_major, major(stack)) == (15, 17)
    assert database_state(stack) == before, "rows differ after the upgrade"
    assert sql(stack, "SHOW server_encoding") == "UTF8"
    # The old volume still holds the PostgreSQL 15 cluster, with the seeded table in it.
    old_data = docker(
        "run", "--rm", "-v", f"{old_volume}:/old:ro", "--entrypoint", "sh", stack.images.postgres_older,
        "-c", "cat /old/PG_VERSION; grep -rl scaffold_seed /old/base /old/global | wc -l",
    )  # fmt: skip
    version, seed_files = old_data.stdout.split()
    assert version == "15", "the old volume no longer holds the PostgreSQL 15 data"
    assert int(seed_files) > 0, "the old volume no longer holds the seeded table"
    assert f"docker volume rm {old_volume}" in run.stdout
    mounts = stack.inspect("postgresql")["Mounts"]
    assert [m["Name"] for m in mounts if m["Type"] == "volume"] == [f"{stack.project}_database-pg17"]
    stack.wait_healthy(SERVICES)

    compose = (stack.dir / "compose.yaml").read_text()
    again = scaffold("db", "upgrade", "--to", "17", "--image", stack.images.postgres, str(stack.dir))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert (stack.dir / "compose.yaml").read_text() == compose
    docker("volume", "rm", old_volume)  # what the upgrade printed, once all works


def test_restore_in_place_of_an_archive_from_before_the_upgrade_is_refused(
    stack: Stack, backup_under_load
) -> None:
    """Its compose.yaml would start the old image on the old volume, not the database restored into."""
    files, database = tree(stack.dir), database_state(stack)
    run = scaffold("restore", str(backup_under_load[0]), str(stack.dir), "--yes")
    assert run.returncode == 1 and "this deployment runs" in run.stderr, run.stdout + run.stderr
    assert tree(stack.dir) == files and database_state(stack) == database


# ---------------------------------------------------------------- round trip (last: it replaces the stack)


def test_round_trip_into_a_new_folder_on_a_fresh_daemon_state(
    stack: Stack, backup_under_load, tmp_path_factory: pytest.TempPathFactory
) -> None:
    archive_in_project = backup_under_load[0]
    keep = tmp_path_factory.mktemp("archive-copy") / archive_in_project.name
    shutil.copy2(archive_in_project, keep)
    seeded = database_state(stack)[1]
    env_before = stack.env()
    old_dir = stack.dir
    media_before = {name: (old_dir / "data" / name).read_bytes() for name in MEDIA}
    cert_before = served_certificate(stack)

    stack.down()  # docker compose down -v: the database volume is gone
    shutil.rmtree(old_dir)
    new_dir = tmp_path_factory.mktemp("restored") / "authentik"
    started = time.monotonic()
    run = scaffold("restore", str(keep), str(new_dir))
    # From here on the fixture's teardown stops the restored stack (or finds nothing to stop).
    stack.dir = new_dir if new_dir.is_dir() else new_dir.parent
    assert run.returncode == 0, f"restore failed:\n{run.stdout}\n{run.stderr}"
    stack.wait_healthy(SERVICES)
    print(f"\n[backup] restore into a new folder and healthy in {time.monotonic() - started:.1f} s")

    assert database_state(stack)[1] == seeded == f"{SEED_ROWS}:" + seeded.split(":", 1)[1]
    assert stack.env() == env_before, ".env differs after the restore"
    assert (new_dir / ".env").stat().st_mode & 0o777 == 0o600
    for name, content in media_before.items():
        assert (new_dir / "data" / name).read_bytes() == content, name
        assert (new_dir / "data" / name).stat().st_uid == 1000
    cert_after = wait_for(lambda: served_certificate(stack), "nginx serving over TLS", timeout=60)
    assert cert_after.serial_number == cert_before.serial_number, "nginx serves another certificate"


def test_scheduled_backup_unit_of_the_restored_stack_backs_up_and_keeps_n(stack: Stack) -> None:
    """What the systemd timer runs (ExecStart of systemd/scaffold-backup@.service, %f = the folder)."""
    unit = (stack.dir / "systemd" / "scaffold-backup@.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    command = shlex.split(exec_start.removeprefix("ExecStart=").replace("%f", str(stack.dir)))
    assert command[1:4] == ["-m", "scaffold", "backup"] and command[-2:] == ["--keep", str(KEEP)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}  # this checkout's scaffold
    for _ in range(KEEP + 1):
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert run.returncode == 0, run.stderr
    archives = sorted((stack.dir / ".scaffold" / "archives").glob("*.tar.gz"))
    assert len(archives) == KEEP, archives
    assert "removed old archive" in run.stdout
