"""authentik's database, reached through the running PostgreSQL container: version, dump, restore.

Everything runs with the container's own binaries (`docker exec`), so the dump is made by the
server's own `pg_dump` (an older client refuses a newer server) and the host needs no PostgreSQL
client. The commands connect over the container's local socket as POSTGRES_USER to POSTGRES_DB,
read from the container's environment: no secret ever appears in a command line. A dump streams
out of the container; a restore streams the dump into the container's /tmp (never into the
database volume) and removes it afterwards.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import BinaryIO

from scaffold.archive import ArchiveError, PostgresInfo
from scaffold.dockerapi import DockerAPI
from scaffold.errors import ProjectError

CHUNK = 1 << 20
SERVICE = "postgresql"
# The official image's contract: POSTGRES_USER (default postgres), POSTGRES_DB (default the user).
# PGPASSWORD from POSTGRES_PASSWORD only matters where local connections need a password.
_CONNECT = (
    'PGPASSWORD="${POSTGRES_PASSWORD:-}" exec "$0" -U "${POSTGRES_USER:-postgres}" '
    '-d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" "$@"'
)
# Tables of the database's own schemas (not PostgreSQL's catalogs).
_USER_TABLES = (
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_%'"
)
USER_TABLES_SQL = f"SELECT count(*) {_USER_TABLES}"
# Exact row counts of those tables, one "schema.table|count" per line.
ROW_COUNTS_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname), (xpath('/row/c/text()', query_to_xml("
    "format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text "
    f"{_USER_TABLES} ORDER BY 1"
)
_VERSION = re.compile(r"\b(\d+)(?:\.(\d+))?")


class DatabaseError(ArchiveError):
    """A command in the PostgreSQL container failed."""


def database_container(
    api: DockerAPI,
    project: str,
    *,
    problem: str = "is not running, so there is no database to reach",
    hint: str = "start it with `docker compose up -d postgresql` in the project folder, then run again",
) -> str:
    """The running postgresql container of the project; `problem` and `hint` say why none is and
    what to do, as the caller knows it (not started yet, or failed to start)."""
    container = api.service_container(project, SERVICE)
    if container is None:
        raise ProjectError(f"the postgresql service of {project!r} {problem}", hint=hint)
    return container


def _connected(program: str, *args: str) -> list[str]:
    return ["sh", "-c", _CONNECT, program, *args]


def psql(api: DockerAPI, container: str, sql: str) -> list[str]:
    """The rows of one query (unaligned, tuples only), or DatabaseError with PostgreSQL's message."""
    code, out, err = api.exec_output(
        container, _connected("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
    )
    if code != 0:
        raise DatabaseError(
            f"PostgreSQL refused a query in the database container: {err or out or f'exit code {code}'}",
            hint="check the postgresql service: `docker compose ps` and `docker compose logs postgresql`",
        )
    return [line for line in out.splitlines() if line.strip()]


def parse_major(version: str) -> int:
    """17 from '17.6 (Debian 17.6-1)', 9 from '9.6.24' (majors before 10 had two parts: counted as 9)."""
    match = _VERSION.search(version)
    if not match:
        raise DatabaseError(f"cannot read a PostgreSQL version from {version!r}")
    return int(match.group(1))


def server_info(api: DockerAPI, container: str) -> PostgresInfo:
    """The running server's version and encoding."""
    version, encoding = psql(
        api, container, "SELECT current_setting('server_version'), current_setting('server_encoding')"
    )[0].split("|")
    version = version.split()[0]
    return PostgresInfo(version=version, major=parse_major(version), encoding=encoding)


def user_table_count(api: DockerAPI, container: str) -> int:
    """How many tables the database holds outside PostgreSQL's own schemas (0: nothing to lose)."""
    return int(psql(api, container, USER_TABLES_SQL)[0])


def row_counts(api: DockerAPI, container: str) -> dict[str, int]:
    """Exact row counts of every table of the database (what a dump and restore must keep)."""
    counts = {}
    for line in psql(api, container, ROW_COUNTS_SQL):
        table, _, count = line.rpartition("|")
        counts[table] = int(count)
    return counts


def image_major(api: DockerAPI, image: str) -> int:
    """The PostgreSQL major an image runs, from `postgres --version` in a throw-away container."""
    # "postgres (PostgreSQL) 17.6 (Debian 17.6-1)": the version follows the product name.
    return parse_major(api.image_command(image, ["postgres", "--version"]).partition("(PostgreSQL)")[2])


def dump(
    api: DockerAPI, container: str, sink: BinaryIO, progress: Callable[[int], None] | None = None
) -> int:
    """Stream `pg_dump --format=custom` of the database into `sink`; returns its size in bytes.

    pg_dump reads one consistent snapshot while the stack keeps serving requests.
    """
    run = api.exec_stream(container, _connected("pg_dump", "--format=custom", "--no-password"))
    size = 0
    for chunk in run.stdout():
        sink.write(chunk)
        size += len(chunk)
        if progress:
            progress(len(chunk))
    code = run.exit_code()
    if code != 0:
        raise DatabaseError(
            f"pg_dump failed in the database container (exit code {code}): {run.stderr_text()}",
            hint="check the postgresql service (`docker compose logs postgresql`), then run the backup again",
        )
    return size


def restore(api: DockerAPI, container: str, source: BinaryIO, size: int) -> None:
    """Replace the database's contents with a custom-format dump, in one transaction.

    `--clean --if-exists` drops what the dump recreates; `--no-owner --no-privileges` makes
    POSTGRES_USER own everything, so a restore works whatever the role was called before.
    """
    name = f"scaffold-restore-{secrets.token_hex(8)}.pgdump"

    def chunks() -> Iterator[bytes]:
        while chunk := source.read(CHUNK):
            yield chunk

    api.put_file(container, "/tmp", name, size, chunks())
    try:
        code, out, err = api.exec_output(
            container,
            _connected(
                "pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
                "--single-transaction", "--exit-on-error", "--no-password", f"/tmp/{name}",
            ),
        )  # fmt: skip
    finally:
        api.exec_output(container, ["rm", "-f", f"/tmp/{name}"])
    if code != 0:
        raise DatabaseError(
            f"pg_restore failed; the database was left as it was (one transaction): {err or out}",
            hint="check `docker compose logs postgresql`; server and worker are started again as before",
        )
