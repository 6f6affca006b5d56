"""Start-up database check: a real login to PostgreSQL with the configured credentials.

This is what makes the stand-in catch a regenerated password or a wrong database name, exactly the
failures a real authentik would hit at start.
"""

from __future__ import annotations

import time

from .config import Database
from .log import log

# Server-side refusals that retrying cannot fix.
FATAL_MARKERS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "password is too long",
)


class DatabaseError(Exception):
    """The database refused us for good, or never answered."""


def wait_for_database(db: Database, timeout: float = 60.0) -> None:
    """Connect and run a query, retrying while PostgreSQL is unreachable or still starting."""
    import psycopg2

    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            conn = psycopg2.connect(
                host=db.host,
                port=db.port,
                dbname=db.name,
                user=db.user,
                password=db.password,
                connect_timeout=5,
            )
        except psycopg2.OperationalError as exc:
            message = " ".join(str(exc).split())
            if any(marker in message for marker in FATAL_MARKERS):
                raise DatabaseError(
                    f"PostgreSQL refused the connection as user {db.user!r} to database {db.name!r} "
                    f"on {db.host}:{db.port}: {message}"
                ) from exc
            if time.monotonic() >= deadline:
                raise DatabaseError(
                    f"PostgreSQL at {db.host}:{db.port} not reachable after {timeout:.0f} s: {message}"
                ) from exc
            log("warning", "PostgreSQL connection failed, retrying...", attempt=attempt, error=message)
            time.sleep(1)
            continue
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW server_encoding")
                (encoding,) = cursor.fetchone()
        finally:
            conn.close()
        if encoding.upper() not in {"UTF8", "UTF-8"}:
            raise DatabaseError(f"database {db.name!r} uses encoding {encoding}; authentik requires UTF8")
        log("info", "PostgreSQL connection successful", host=db.host, database=db.name, user=db.user)
        return
