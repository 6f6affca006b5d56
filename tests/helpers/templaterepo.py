"""Throwaway git repositories of the template, with version tags, for update tests.

The working tree (committed or not) is copied into a new repository and tagged v1.0.0; a
test then changes files and tags v2.0.0, exactly as a maintainer would publish a release.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

from tests.helpers.stack import REPO_ROOT

IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.test"]


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


#: What copier needs to render the template and run its tasks (copier.yml's `_subdirectory`, its
#: Jinja extension and task in scaffold/, the Swarm stack file it includes). Tests, benchmarks and
#: docs stay out: every clone copier makes of a test template would check them out for nothing.
TEMPLATE_PARTS = ("copier.yml", "pyproject.toml", "template", "scaffold", "swarm")


def make_template_repo(dest: Path) -> Path:
    """A copy of this template (working tree) as a new repository tagged v1.0.0."""
    listed = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in sorted(set(filter(None, listed.split("\0")))):
        if name.split("/", 1)[0] not in TEMPLATE_PARTS:
            continue
        source = REPO_ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    git(dest, "init", "-q")
    release(dest, "v1.0.0")
    return dest


def release(repo: Path, tag: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"release {tag}")
    git(repo, "tag", tag)


def edit(repo: Path, relative: str, old: str, new: str) -> None:
    """Replace one exact piece of a template file (fails loudly when the piece is not there)."""
    path = repo / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def add_migration(repo: Path, name: str, version: str, body: str) -> None:
    """Register a migration in the template's scaffold code and declare it in copier.yml."""
    path = repo / "scaffold/migrations.py"
    path.write_text(f"{path.read_text()}\n{body}\n\nMIGRATIONS[{name!r}] = {name}\n")
    edit(
        repo,
        "copier.yml",
        "_migrations:\n",
        "_migrations:\n"
        f"  - version: {version}\n"
        "    when: \"{{ _stage == 'after' }}\"\n"
        "    command: >-\n"
        "      PYTHONPATH={{ _copier_conf.src_path | quote }} {{ _copier_python | quote }}\n"
        f"      -P -m scaffold migrate {name}\n",
    )


# The last release without web_path / upstream_proxies, as `git archive v1.0.0 copier.yml template
# scaffold pyproject.toml | gzip -n -9` (what copier needs to render it and run its tasks).
PREVIOUS_RELEASE_ARCHIVE = Path(__file__).resolve().parents[1] / "fixtures" / "release-v1.0.0.tar.gz"
PREVIOUS_RELEASE_COMMIT = "d54be653baf65d7e7959bed1648327c4aa12d37a"


def previous_release_repo(dest: Path) -> Path:
    """A template repository whose v1.0.0 is the published release v1.0.0, from the test fixture.

    The fixture is `git archive` of that tag, so the test needs neither the tag nor the history
    in the clone it runs from (CI's clone has no tags). The archive names its commit.
    """
    archive = gzip.decompress(PREVIOUS_RELEASE_ARCHIVE.read_bytes())
    commit_id = (
        subprocess.run(["git", "get-tar-commit-id"], input=archive, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    assert commit_id == PREVIOUS_RELEASE_COMMIT, f"{PREVIOUS_RELEASE_ARCHIVE.name} is not release v1.0.0"
    dest.mkdir()
    subprocess.run(["tar", "-x"], cwd=dest, input=archive, check=True)
    git(dest, "init", "-q")
    release(dest, "v1.0.0")
    return dest
