"""Generated projects for the update tests: a v2 release with a migration, user edits, snapshots.

Shared by tests/test_update*.py and tests/e2e/test_update_backup.py.
"""

from __future__ import annotations

from pathlib import Path

from scaffold.cli import main
from tests.helpers.templaterepo import add_migration, edit, git, release

MIGRATION = '''
def v2_marker(root: Path) -> str:
    """Synthetic migration: appends one line per run, so a test can count the runs."""
    log = root / ".scaffold" / "migrations.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("a") as handle:
        handle.write("v2_marker\\n")
    return "marked"
'''


def publish_v2(repo: Path, *, migration_body: str = MIGRATION) -> None:
    """v2: an nginx change, a new .env key, and a migration."""
    edit(repo, "template/nginx/conf.d/authentik.conf.jinja", "keepalive 32;", "keepalive 64;")
    edit(
        repo,
        "template/nginx/snippets/security-headers.conf",
        'add_header Referrer-Policy "strict-origin-when-cross-origin" always;',
        'add_header Referrer-Policy "strict-origin-when-cross-origin" always;\n'
        'add_header Permissions-Policy "camera=(), microphone=()" always;',
    )
    edit(
        repo,
        "scaffold/envkeys.py",
        "values = {TAG: answers.authentik_version}",
        'values = {TAG: answers.authentik_version, "AUTHENTIK_LOG_LEVEL": "info"}',
    )
    add_migration(repo, "v2_marker", "v2.0.0", migration_body)
    release(repo, "v2.0.0")


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the project but git's internals and scaffold's own bookkeeping."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            rel.startswith((".git/", ".scaffold/backups", ".scaffold/lock", ".scaffold/update.lock"))
            or not path.is_file()
        ):
            continue
        files[rel] = path.read_bytes()
    return files


def commit(project: Path, message: str = "my changes") -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def new_project(dest: Path, template_repo: Path, *data: str) -> Path:
    code = main(
        [
            "new", str(dest), "--template", str(template_repo), "--vcs-ref", "v1.0.0", "--defaults",
            "--data", "domain=sso.example.test", "--data", "acme_email=admin@example.test",
            *(part for item in data for part in ("--data", item)),
        ]
    )  # fmt: skip
    assert code == 0
    return dest


def user_edits(project: Path) -> None:
    edit(project, "nginx/conf.d/authentik.conf", "client_max_body_size 64m;", "client_max_body_size 256m;")
    (project / "nginx/custom/authentik.d/mine.conf").write_text("location /mine { return 204; }\n")
    with (project / ".env").open("a") as handle:
        handle.write("\n# my own setting, keep it\nMY_SETTING='hello # world'\nexport ODD=\"x\"\n")
    commit(project)
