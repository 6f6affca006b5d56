""".env through twenty cycles of copy / update / detect / update: the secrets stay byte-identical,
every line the user added stays as written, and the file stays private (0600).

A module of its own because it is the suite's longest test (about two minutes): parallel test
workers run it beside everything else instead of after the rest of test_detect.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import copier

from scaffold.cli import main
from tests.helpers.templaterepo import make_template_repo

USER_LINES = (
    "\n# my own settings below; scaffold must keep them\n"
    "MY_KEY='single quoted # not a comment'\n"
    'OTHER="double \\"quoted\\""\n'
    "  INDENTED = yes   # trailing comment\n"
    "EMPTY=\n"
    "AUTHENTIK_LOG_LEVEL=debug\n"
)


def test_twenty_cycles_keep_secrets_and_user_lines_byte_identical(tmp_path: Path):
    template = make_template_repo(tmp_path / "template")
    project = tmp_path / "sso"
    copier.run_copy(
        str(template), str(project), data={"domain": "sso.example.test", "acme_email": "a@example.test"},
        defaults=True, unsafe=True, quiet=True,
    )  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"], cwd=project, check=True
    )
    with (project / ".env").open("a") as handle:
        handle.write(USER_LINES)
    original = (project / ".env").read_bytes()

    for cycle in range(20):
        if cycle == 10:  # a copy over the existing project must not touch .env either
            copier.run_copy(
                str(template), str(project), defaults=True, unsafe=True, quiet=True, overwrite=True
            )
        copier.run_update(
            str(project), defaults=True, overwrite=True, unsafe=True, quiet=True, skip_answered=True
        )
        assert main(["detect", str(project)]) == 0
        assert main(["update", str(project)]) == 0
        assert (project / ".env").read_bytes() == original, f".env changed in cycle {cycle}"
    assert (project / ".env").stat().st_mode & 0o777 == 0o600
