"""Time and size of `scaffold backup` against a bare `pg_dump | gzip` plus `tar` of the same folders.

One generated project (stand-in images) with only its postgresql service running; its database is
filled with about `--db-mb` MB of rows (text, partly compressible) and its `data/media/` with
`--media-mb` MB of random bytes (media files: incompressible). Then, interleaved after one untimed
warm-up each, `--runs` times:

  scaffold backup     python -m scaffold backup DEST --output DIR (the archive, manifest, checksums)
  bare                docker exec pg_dump -U authentik authentik | gzip > db.sql.gz, then
                      tar -czf files.tar.gz of the project folder (the same files scaffold archives)

Prints the medians and sizes, then the ratios last (target: time at most 1.2x the bare way).
Exits 1 only when it could not measure.

    python bench/backup.py [--runs 3] [--db-mb 50] [--media-mb 50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _benchutil import REPO_ROOT, CouldNotMeasure, log, machine, median, print_table, run_measurement

from tests.helpers.stack import running_stack

FILL_SQL = (
    "CREATE TABLE bench_rows AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 7) AS body "
    "FROM generate_series(1, {rows}) g"
)
ROW_BYTES = 300  # about what one bench_rows row takes on disk


def sh(command: str, *, cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(["sh", "-ec", command], cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise CouldNotMeasure(f"{command} failed: {result.stderr[-2000:]}")
    return elapsed


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def measure(args: argparse.Namespace) -> int:
    import docker

    from tests.standins.images import ensure_standin_images

    client = docker.from_env(timeout=600)
    images = ensure_standin_images(client)
    log(machine())
    with (
        tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp,
        running_stack(Path(tmp), images) as stack,
    ):
        stack.up("postgresql")
        stack.wait_healthy(("postgresql",))
        rows = args.db_mb * 1_000_000 // ROW_BYTES
        stack.exec(
            "postgresql", "psql", "-U", "authentik", "-d", "authentik", "-c", FILL_SQL.format(rows=rows)
        )
        db_size = stack.exec(
            "postgresql", "psql", "-A", "-t", "-U", "authentik", "-d", "authentik",
            "-c", "SELECT pg_database_size('authentik')",
        ).stdout.strip()  # fmt: skip
        media = stack.dir / "data" / "media"
        media.mkdir(parents=True, exist_ok=True)
        for index in range(args.media_mb):
            (media / f"file-{index:03d}.bin").write_bytes(os.urandom(1_000_000))
        log(f"database {int(db_size) / 1e6:.0f} MB on disk, media {args.media_mb} MB")

        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMPOSE_FILE": "compose.yaml:compose.test.yaml"}
        container = stack.container_id("postgresql")
        ours_dir, bare_dir = Path(tmp) / "ours", Path(tmp) / "bare"

        def ours() -> float:
            ours_dir.mkdir(exist_ok=True)
            for old in ours_dir.iterdir():
                old.unlink()
            os.sync()
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-P", "-m", "scaffold", "backup", str(stack.dir), "--output", str(ours_dir)],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise CouldNotMeasure(f"scaffold backup failed: {result.stderr}")
            return time.perf_counter() - started

        def bare() -> float:
            bare_dir.mkdir(exist_ok=True)
            os.sync()
            return sh(
                f"docker exec {container} pg_dump -U authentik authentik | gzip > {bare_dir}/db.sql.gz\n"
                f"tar -czf {bare_dir}/files.tar.gz --exclude=./.scaffold -C {stack.dir} .",
                cwd=stack.dir,
            )

        ours(), bare()  # warm-up: page cache, image layers, Python bytecode
        times: dict[str, list[float]] = {"scaffold backup": [], "bare": []}
        for run in range(args.runs):
            order = [("scaffold backup", ours), ("bare", bare)]
            for name, step in order if run % 2 == 0 else reversed(order):
                times[name].append(step())
            log(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        sizes = {"scaffold backup": size_of(ours_dir), "bare": size_of(bare_dir)}

    rows_out = [
        [
            name,
            f"{median(values):.2f}",
            f"{min(values):.2f}",
            f"{max(values):.2f}",
            f"{sizes[name] / 1e6:.1f}",
        ]
        for name, values in times.items()
    ]
    print_table(["variant", "median s", "min s", "max s", "MB"], rows_out)
    time_ratio = median(times["scaffold backup"]) / median(times["bare"])
    size_ratio = sizes["scaffold backup"] / sizes["bare"]
    print(f"\ntime ratio scaffold backup / bare: {time_ratio:.2f} (target <= 1.2)")
    print(f"size ratio scaffold backup / bare: {size_ratio:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each variant (default 3)")
    parser.add_argument(
        "--db-mb", type=int, default=50, help="MB of rows to put in the database (default 50)"
    )
    parser.add_argument("--media-mb", type=int, default=50, help="MB of media files in data/ (default 50)")
    return run_measurement(measure, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
