"""`scaffold update` (and the other commands) when something is wrong: one rule, one message, no traceback.

What a user sees: the authentik upgrade rules hold however the version is given; two updates at
once never mix; a failed or interrupted update puts the project back as it was; the printed
restore command works on any path and gives files their modes back; a `scaffold.py` in the
project cannot replace the copier task; and every broken input ends in a message with a fix,
a non-zero exit code and the files as they were, never in a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from scaffold.cli import main
from tests.helpers.projects import MIGRATION, commit, new_project, publish_v2, snapshot
from tests.helpers.requirements import require
from tests.helpers.templaterepo import edit, git, make_template_repo


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stack at template v1.0.0 (authentik 2026.8.7) whose template has v2.0.0 published; never changed."""
    root = tmp_path_factory.mktemp("robust")
    template = make_template_repo(root / "template")
    project = new_project(root / "sso", template)
    publish_v2(template)
    return project


@pytest.fixture
def project(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine stack (same template), for a test to break."""
    copy = tmp_path / "sso"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def template_of(project: Path) -> Path:
    """The template source recorded in the project's answers file."""
    return Path(re.search(r"_src_path: (.+)", (project / ".copier-answers.yml").read_text()).group(1))


def scaffold_cli(*args: str, **options) -> subprocess.CompletedProcess[str]:
    """`scaffold ARGS` in a child process, as a user runs it (output captured, never coloured)."""
    env = {**os.environ, "NO_COLOR": "1", **options.pop("env", {})}
    command = [sys.executable, "-P", "-m", "scaffold", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False, **options)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *words: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode not in (0, 3), text
    assert "Traceback" not in text and "unexpected error" not in text, text
    assert "error:" in text and "fix:" in text, f"no message with a fix:\n{text}"
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"
    return text


# ------------------------------------------------------------------- item 12: one authentik rule


def test_authentik_version_given_as_data_follows_the_upgrade_rules(
    tmp_path: Path, pristine: Path, capsys
) -> None:
    """`--data authentik_version=X` and `--authentik X`: the same refusals, the same --yes."""

    def forms(project: Path, version: str) -> list[list[str]]:
        given = (["--authentik", version], ["--data", f"authentik_version={version}"])
        return [["update", str(project), *form] for form in given]

    def refused(project: Path, version: str, *words: str) -> None:
        before = snapshot(project)
        for argv in forms(project, version):
            assert main(argv) == 1, argv
            err = capsys.readouterr().err
            assert all(word in err for word in words), (argv, err)
        assert snapshot(project) == before

    project = tmp_path / "current"
    shutil.copytree(pristine, project, symlinks=True)
    refused(project, "2026.5.3", "does not support downgrades")

    old = new_project(tmp_path / "old", template_of(project), "authentik_version=2026.2.3")
    capsys.readouterr()
    refused(old, "2026.11.0", "skips the release line(s) 2026.5, 2026.8", "--yes")
    assert main([*forms(old, "2026.11.0")[1], "--yes", "--to", "v1.0.0"]) == 0
    assert dotenv_values(old / ".env")["AUTHENTIK_TAG"] == "2026.11.0"


def test_authentik_and_data_that_disagree_are_refused(project: Path, capsys) -> None:
    before = snapshot(project)
    argv = ["update", str(project), "--authentik", "2026.11.0", "--data", "authentik_version=2026.8.8"]
    assert main(argv) == 2
    assert "disagree" in capsys.readouterr().err
    assert snapshot(project) == before


# ------------------------------------------------------------------- item 13: lock, no traceback


def test_two_concurrent_updates_never_mix(project: Path) -> None:
    """Both start at once: one updates, the other is refused with a message; no .rej, no traceback."""
    before = set(snapshot(project))
    children = [
        subprocess.Popen(
            [sys.executable, "-P", "-m", "scaffold", "update", str(project)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=240)[0] for child in children]
    codes = sorted(child.returncode for child in children)
    joined = "\n----\n".join(outputs)
    assert codes == [0, 1], joined
    assert "Traceback" not in joined
    refused = outputs[[child.returncode for child in children].index(1)]
    assert "holds the lock" in refused or "uncommitted changes" in refused, refused
    assert not list(project.rglob("*.rej")), joined
    assert "_commit: v2.0.0" in (project / ".copier-answers.yml").read_text()
    changed = {line[3:] for line in git(project, "status", "--porcelain").splitlines()}
    assert not any(
        "<<<<<<<" in (project / name).read_text() for name in changed if (project / name).is_file()
    )
    assert set(snapshot(project)) >= before


def test_stale_git_index_lock_is_refused_with_the_fix(project: Path, capsys) -> None:
    (project / ".git" / "index.lock").write_text("")
    before = snapshot(project)
    assert main(["update", str(project)]) == 1
    err = capsys.readouterr().err
    assert "index.lock exists" in err and "rm " in err
    assert snapshot(project) == before


def _add_answer(line: str):
    def breaker(project: Path) -> None:
        with (project / ".copier-answers.yml").open("a") as answers:
            answers.write(f"{line}\n")
        commit(project, "hand edit")

    return breaker


def test_answers_value_of_the_wrong_type_is_named(project: Path, capsys) -> None:
    _add_answer("smtp_port: abc")(project)
    before = snapshot(project)
    for command in ("update", "detect", "doctor"):
        assert main([command, str(project)]) in (1, 2), command
        err = capsys.readouterr().err
        assert "smtp_port: 'abc', which is not a whole number" in err, err
    assert snapshot(project) == before


def test_failing_update_puts_the_project_back(tmp_path: Path, capsys) -> None:
    """copier fails half-way (a migration exits 1): exit 1 means the files are as they were."""
    template = make_template_repo(tmp_path / "template")
    project = new_project(tmp_path / "sso", template)
    failing = MIGRATION.replace('return "marked"', 'raise SystemExit("migration failed on purpose")')
    publish_v2(template, migration_body=failing)
    before = snapshot(project)
    assert main(["update", str(project)]) == 1
    err = capsys.readouterr().err
    assert "as it was before the update" in err, err
    after = snapshot(project)
    after.pop(".scaffold/migrations.log", None)
    assert after == before


def test_interrupted_update_puts_the_project_back(tmp_path: Path) -> None:
    """Ctrl-C while copier runs a (slow) migration: exit 130, and the project as it was."""
    template = make_template_repo(tmp_path / "template")
    project = new_project(tmp_path / "sso", template)
    # The migration says when it is asleep: the interrupt then lands inside copier's run for sure.
    slow = MIGRATION.replace(
        'return "marked"',
        '(root / ".scaffold" / "migration-asleep").write_text("")\n    import time\n    time.sleep(30)\n'
        '    return "marked"',
    )
    publish_v2(template, migration_body=slow)
    before = snapshot(project)
    child = subprocess.Popen(
        [sys.executable, "-P", "-m", "scaffold", "update", str(project)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,
        # As from a terminal: a test run started in the background (`cmd &` in a script) inherits
        # SIGINT ignored, and so would the update and copier's migration, which Ctrl-C never reaches.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (project / ".scaffold" / "migration-asleep").exists():
        time.sleep(0.1)
    assert child.poll() is None, "the update finished before it could be interrupted"
    os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out = child.communicate(timeout=60)[0]
    assert child.returncode == 130, out
    assert "Traceback" not in out and "as it was before the update" in out, out
    after = snapshot(project)
    after.pop(".scaffold/migrations.log", None)
    after.pop(".scaffold/migration-asleep", None)
    assert after == before


# ------------------------------------------------------------------- item 14: the restore command


def test_printed_restore_command_works_on_any_path_and_restores_modes(pristine: Path, tmp_path: Path) -> None:
    project = tmp_path / "my sso's stack"
    shutil.copytree(pristine, project, symlinks=True)
    script = project / "nginx" / "snippets" / "security-headers.conf"
    script.chmod(0o755)  # a tracked file with its own mode
    commit(project, "executable on purpose")
    (project / "nginx").chmod(0o750)
    project.chmod(0o755)
    before = snapshot(project)

    result = scaffold_cli("update", str(project))
    assert result.returncode == 0, result.stdout + result.stderr
    restore = re.search(r"restore with: (.+)", result.stdout).group(1)
    subprocess.run(restore, shell=True, check=True, cwd=tmp_path)

    after = snapshot(project)
    after.pop(".scaffold/migrations.log", None)
    after.pop(".scaffold/state.json", None)
    before.pop(".scaffold/state.json", None)
    assert after == before

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(project / ".env") == 0o600
    assert mode(script) == 0o755
    assert mode(project / "nginx") == 0o750
    assert mode(project) == 0o755, "the backup folder's 0700 was copied onto the project"
    assert mode(project / "compose.yaml") == 0o644


# ------------------------------------------------------------------- item 15: the copier task


def test_copier_task_is_not_replaced_by_a_scaffold_module_in_the_project(tmp_path: Path) -> None:
    """Plain `copier update`: the task runs the template's hook, not the project's scaffold.py."""
    import copier

    template = make_template_repo(tmp_path / "template")
    project = new_project(tmp_path / "sso", template)
    (project / "scaffold.py").write_text("from pathlib import Path\nPath('SHADOWED').write_text('yes')\n")
    commit(project, "a scaffold.py of my own")
    publish_v2(template)
    copier.run_update(
        str(project), defaults=True, overwrite=True, unsafe=True, skip_answered=True, quiet=True
    )
    assert not (project / "SHADOWED").exists(), "the project's scaffold.py ran instead of the hook"
    assert dotenv_values(project / ".env").get("AUTHENTIK_LOG_LEVEL") == "info", "the v2 hook did not run"


# ------------------------------------------------------------------- the sweep: no traceback anywhere


def _answers_edit(old: str, new: str):
    def breaker(project: Path) -> None:
        edit(project, ".copier-answers.yml", old, new)
        commit(project, "hand edit")

    return breaker


def _move_template(project: Path) -> None:
    source = template_of(project)
    edit(project, ".copier-answers.yml", f"_src_path: {source}", f"_src_path: {source}-gone")
    commit(project, "template moved")


def _no_git(project: Path) -> dict[str, str]:
    bin_dir = project.parent / "bin-without-git"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    return {"PATH": str(bin_dir)}


BROKEN: dict[str, tuple] = {
    # name: (breaker(project) -> env or None, argv after the command, expected words)
    "answers not yaml": (lambda p: (p / ".copier-answers.yml").write_text("a: [\n"), (), ("cannot read",)),
    "answers a list": (lambda p: (p / ".copier-answers.yml").write_text("- a\n"), (), ("not a mapping",)),
    "answers a folder": (
        lambda p: ((p / ".copier-answers.yml").unlink(), (p / ".copier-answers.yml").mkdir()),
        (),
        ("not found",),
    ),
    "smtp_port abc": (_add_answer("smtp_port: abc"), (), ("smtp_port",)),
    "enable_ipv6 maybe": (_answers_edit("enable_ipv6: false", "enable_ipv6: maybe"), (), ("enable_ipv6",)),
    "version a number": (
        _answers_edit("authentik_version: 2026.8.7", "authentik_version: 2026.10"),
        (),
        ("authentik_version",),
    ),
    "src_path relative": (_answers_edit("_src_path: /", "_src_path: "), (), ("relative path",)),
    "template vanished": (_move_template, (), ("not there any more",)),
    "env a folder": (lambda p: ((p / ".env").unlink(), (p / ".env").mkdir()), (), (".env",)),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("command", ["update", "detect", "doctor"])
def test_broken_project_gives_a_message_not_a_traceback(
    project: Path, capsys, case: str, command: str
) -> None:
    breaker, extra, words = BROKEN[case]
    breaker(project)
    before = snapshot(project)
    argv = [command, str(project), *extra]
    if command == "doctor":
        argv.append("--offline")
    code = main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "unexpected error" not in text, text
    if command == "doctor" and code in (0, 1):  # doctor reports a broken part as a failed check
        return
    if command == "detect" and case in ("src_path relative", "template vanished"):
        assert code == 0, text  # detection does not need the template
        return
    assert code in (1, 2), text
    assert any(word in text for word in words), text
    assert snapshot(project) == before


def test_missing_git_is_a_message(project: Path) -> None:
    env = _no_git(project)
    before = snapshot(project)
    assert_clean_failure(scaffold_cli("update", str(project), env=env), "git is not installed")
    assert_clean_failure(
        scaffold_cli("new", str(project.parent / "new"), "--defaults", "--data", "domain=sso.example.test",
                     "--data", "acme_email=a@example.test", env=env),
    )  # fmt: skip
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["update", "{missing}"], ("not a folder",)),
        (["update", "{file}"], ("not a folder",)),
        (["detect", "{missing}"], ("not found",)),
        (["update", "{project}", "--to", "v9.9.9"], ("has no version 'v9.9.9'",)),
        (["update", "{project}", "--data", "smtp_port=abc"], ("smtp_port",)),
        (["update", "{project}", "--data", "enable_ipv6=perhaps"], ("'perhaps' is not true or false",)),
        (["update", "{project}", "--data", "domain=Bad Domain"], ("domain",)),
        (["update", "{project}", "--authentik", "latest"], ("not an authentik release",)),
        (["new", "{project}", "--defaults", "--data", "domain=sso.example.test"], ("already exists",)),
        (["new", "{fresh}", "--template", "{missing}", "--defaults"], ("not a template",)),
        (["new", "{fresh}", "--template", "{template}", "--vcs-ref", "nope"], ("has no version 'nope'",)),
    ],
)
def test_bad_command_line_gives_a_message_not_a_traceback(
    project: Path, tmp_path: Path, capsys, argv: list[str], words: tuple[str, ...]
) -> None:
    (tmp_path / "a-file").write_text("x")
    places = {
        "missing": str(tmp_path / "missing"),
        "file": str(tmp_path / "a-file"),
        "project": str(project),
        "fresh": str(tmp_path / "fresh"),
        "template": str(template_of(project)),
    }
    before = snapshot(project)
    code = main([part.format(**places) for part in argv])
    captured = capsys.readouterr()
    assert code in (1, 2), captured.out + captured.err
    assert all(word in captured.err for word in words), captured.err
    assert snapshot(project) == before
    assert not (tmp_path / "fresh").exists()


def _can_mount_read_only(folder: Path) -> bool:
    here = shlex.quote(str(folder))
    probe = ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {here} {here}"]
    return shutil.which("unshare") is not None and subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.parametrize("writable", [(), (".git", ".scaffold")], ids=["all", "all-but-git-and-scaffold"])
def test_read_only_project_is_a_message(project: Path, writable: tuple[str, ...]) -> None:
    """A project on a read-only mount (all of it, or all but git's and scaffold's folders)."""
    require(_can_mount_read_only(project), "read-only bind mounts need `unshare -m` and mount rights")
    before = snapshot(project)
    here = shlex.quote(str(project))
    mounts = [f"mount --bind -o ro {here} {here}"]
    for name in writable:
        inner = shlex.quote(str(project / name))
        mounts += [f"mount --bind {inner} {inner}", f"mount -o remount,bind,rw {inner}"]
    command = [sys.executable, "-P", "-m", "scaffold", "update", str(project)]
    script = " && ".join([*mounts, "exec " + shlex.join(command)])
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True, text=True, check=False, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert_clean_failure(result, "Read-only file system")
    assert snapshot(project) == before
