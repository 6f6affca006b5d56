"""Issue 16: a template release that moves PostgreSQL to a new major, through `scaffold update`.

A throwaway template repository whose v1.0.0 runs the OLDER PostgreSQL stand-in (Debian bookworm's
15) in compose.yaml itself and whose v2.0.0 runs the newer one (trixie's 17), as a release moving
`postgres:16-alpine` to `postgres:17-alpine` would. A project at v1.0.0 runs with a seeded table.
`scaffold update --dry-run` changes nothing: files, volumes, containers and data are compared.
`scaffold update --apply` then leaves compose.yaml, the volume and the running server agreeing on
17, with the same rows, the old volume kept and the commands to remove it and to go back printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers.projects import commit, new_project, snapshot
from tests.helpers.stack import OVERRIDE, REPO_ROOT, Stack, docker, free_port, unique_name, write_override
from tests.helpers.templaterepo import edit, git, make_template_repo, release

pytestmark = pytest.mark.docker

SEED_SQL = (
    "CREATE TABLE scaffold_seed AS SELECT g AS id, md5(g::text) AS value FROM generate_series(1, 10000) g"
)
CHECKSUM_SQL = (
    "SELECT count(*) || ':' || md5(string_agg(id || '=' || value, ',' ORDER BY id)) FROM scaffold_seed"
)
STOCK_IMAGE = "image: postgres:16-alpine"


def scaffold(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with this checkout's code and the test override file."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMPOSE_FILE": f"compose.yaml:{OVERRIDE}"}
    return subprocess.run(
        [sys.executable, "-P", "-m", "scaffold", *args],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip


def volumes(project: str) -> list[str]:
    return docker(
        "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"
    ).stdout.split()


def containers(project: str) -> list[str]:
    """Every container of the project (running or not) with its image and state."""
    listed = docker(
        "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
        "--format", "{{.Names}} {{.Image}} {{.State}}",
    )  # fmt: skip
    return sorted(listed.stdout.splitlines())


def sql(stack: Stack, query: str) -> str:
    return stack.exec(
        "postgresql", "psql", "-X", "-A", "-t", "-U", "authentik", "-d", "authentik", "-c", query
    ).stdout.strip()


def major(stack: Stack) -> int:
    return int(sql(stack, "SHOW server_version_num")) // 10000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Stack]:
    """A project of template v1.0.0 (older stand-in), running, seeded; v2.0.0 moves to the newer."""
    tmp = tmp_path_factory.mktemp("pgmajor")
    template = make_template_repo(tmp / "template")
    older, newer = standin_images.postgres_older, standin_images.postgres
    edit(template, "template/compose.yaml.jinja", STOCK_IMAGE, f"image: {older}")
    git(template, "commit", "-q", "-a", "--amend", "--no-edit")
    git(template, "tag", "-f", "v1.0.0")
    name = unique_name("pgm")
    http_port, https_port = free_port(), free_port()
    project = new_project(tmp / name, template, f"http_port={http_port}", f"https_port={https_port}")
    write_override(project, standin_images)
    override = json.loads((project / OVERRIDE).read_text())
    del override["services"]["postgresql"]["image"]  # compose.yaml's own image is the one that moves
    for settings in override["services"].values():
        settings["pull_policy"] = "never"  # the stand-ins exist only here: `docker compose pull` skips them
    (project / OVERRIDE).write_text(json.dumps(override, indent=2))
    commit(project, "test override")
    edit(template, "template/compose.yaml.jinja", f"image: {older}", f"image: {newer}")
    release(template, "v2.0.0")
    stack = Stack(project, name, standin_images, http_port, https_port)
    try:
        stack.compose("up", "-d", "--wait", "postgresql")
        sql(stack, SEED_SQL)
        yield stack
    finally:
        stack.down()
        for volume in volumes(name):  # the volume the upgrade keeps is no service's any more
            docker("volume", "rm", "-f", volume, check=False)


def everything(stack: Stack) -> tuple[object, ...]:
    """What a dry run must leave alone: files, volumes, containers, rows."""
    return snapshot(stack.dir), volumes(stack.project), containers(stack.project), sql(stack, CHECKSUM_SQL)


def test_dry_run_changes_no_file_volume_container_or_row(stack: Stack) -> None:
    before = (
        snapshot(stack.dir),
        volumes(stack.project),
        containers(stack.project),
        sql(stack, CHECKSUM_SQL),
    )
    run = scaffold("update", str(stack.dir), "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PostgreSQL 15 -> 17" in run.stdout and "would keep" in run.stdout, run.stdout
    assert everything(stack) == before
    assert git(stack.dir, "status", "--porcelain") == ""


def test_update_without_apply_keeps_the_database_s_image_and_prints_the_move(stack: Stack) -> None:
    """Everything else of the update lands; compose.yaml stays on 15, so `up -d` is safe."""
    rows = sql(stack, CHECKSUM_SQL)
    run = scaffold("update", str(stack.dir))
    assert run.returncode == 0, run.stdout + run.stderr
    compose = (stack.dir / "compose.yaml").read_text()
    assert (
        f"image: {stack.images.postgres_older}" in compose and "database:/var/lib/postgresql/data" in compose
    )
    assert f"scaffold db upgrade --to 17 --image {stack.images.postgres} {stack.dir}" in run.stdout, (
        run.stdout
    )
    stack.compose("up", "-d", "--wait", "postgresql")
    assert (major(stack), sql(stack, CHECKSUM_SQL)) == (15, rows)
    # Back to v1.0.0 with the restore command the update printed, for the --apply test below.
    restore = next(line for line in run.stdout.splitlines() if "restore with: cd " in line)
    subprocess.run(restore.split("restore with: ", 1)[1], shell=True, check=True)
    assert git(stack.dir, "status", "--porcelain") == ""
    assert "_commit: v1.0.0" in (stack.dir / ".copier-answers.yml").read_text()


def test_apply_moves_the_database_to_the_new_major_and_keeps_the_old_volume(stack: Stack) -> None:
    rows, old_volume = sql(stack, CHECKSUM_SQL), f"{stack.project}_database"
    run = scaffold("update", str(stack.dir), "--apply")
    print(f"\n[update --apply]\n{run.stdout}\n{run.stderr}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert major(stack) == 17
    assert sql(stack, CHECKSUM_SQL) == rows, "rows differ after the move"
    # compose.yaml, the running container and its volume agree on the newer major.
    compose = (stack.dir / "compose.yaml").read_text()
    assert f"image: {stack.images.postgres}" in compose
    assert "database-pg17:/var/lib/postgresql/data" in compose
    postgresql = stack.inspect("postgresql")
    assert postgresql["Config"]["Image"] == stack.images.postgres
    assert [m["Name"] for m in postgresql["Mounts"] if m["Type"] == "volume"] == [f"{old_volume}-pg17"]
    # The old volume stays, with the PostgreSQL 15 data; the output says how to remove it and go back.
    old = docker(
        "run", "--rm", "-v", f"{old_volume}:/old:ro", "--entrypoint", "cat", stack.images.postgres_older,
        "/old/PG_VERSION",
    )  # fmt: skip
    assert old.stdout.strip() == "15"
    assert f"docker volume rm {old_volume}" in run.stdout
    archives = list((stack.dir / ".scaffold/archives").glob("*.tar.gz"))
    assert len(archives) == 1 and f"scaffold restore {archives[0]} {stack.dir} --yes" in run.stdout
    assert run.stdout.index("backup written") < run.stdout.index("PostgreSQL 15 -> 17")

    commit(stack.dir, "scaffold update")
    again = scaffold("update", str(stack.dir), "--dry-run")
    assert again.returncode == 0 and "postgresql" not in again.stdout.lower(), again.stdout + again.stderr
