"""`scaffold new` runs copier's task itself only when the template's code is its own (inprocess.py)."""

from __future__ import annotations

from pathlib import Path

import copier
from dotenv import dotenv_values

from scaffold.cli import main
from scaffold.inprocess import PACKAGE_DIR, claim_task, offer_task, same_files
from tests.helpers.stack import unique_name
from tests.helpers.templaterepo import edit, git, make_template_repo, release

TASK_LINE = "Running task 1 of 1"


def _new(dest: Path, template: Path) -> int:
    argv = ["new", str(dest), "--defaults", "--template", str(template)]
    for item in (
        "domain=sso.example.test",
        "acme_email=admin@example.test",
        f"project_name={unique_name('ip')}",
    ):
        argv += ["--data", item]
    return main(argv)


def _assert_env_made(project: Path) -> None:
    env = dotenv_values(project / ".env")
    assert env.get("PG_PASS") and env.get("AUTHENTIK_SECRET_KEY") and env.get("PROXY_SUBNET"), env.keys()
    assert (project / ".env").stat().st_mode & 0o777 == 0o600


def test_scaffold_new_runs_the_hook_itself_when_the_template_is_its_own_code(tmp_path: Path, capfd):
    template = make_template_repo(tmp_path / "template")  # this working tree: the code running here
    dest = tmp_path / "sso"
    assert _new(dest, template) == 0
    printed = "".join(capfd.readouterr())
    assert TASK_LINE not in printed, "copier started a second Python for a hook this process runs"
    assert "created .env" in printed
    _assert_env_made(dest)


def test_scaffold_new_leaves_the_task_to_copier_when_the_template_code_differs(tmp_path: Path, capfd):
    """Another template version's hook is that version's code: copier runs it, as plain copier does."""
    template = make_template_repo(tmp_path / "template")
    edit(
        template,
        "scaffold/hook.py",
        "    root = (project_dir or Path.cwd()).resolve()\n",
        "    root = (project_dir or Path.cwd()).resolve()\n    print('hook of template v1.1.0')\n",
    )
    release(template, "v1.1.0")
    dest = tmp_path / "sso"
    assert _new(dest, template) == 0
    printed = "".join(capfd.readouterr())
    assert TASK_LINE in printed and "hook of template v1.1.0" in printed, printed
    _assert_env_made(dest)


def test_the_task_is_claimed_only_during_a_copy_of_scaffold_new_and_only_once():
    assert not claim_task(PACKAGE_DIR), "no copy of scaffold new is running"
    with offer_task() as offer:
        assert claim_task(PACKAGE_DIR) and offer.claimed
        assert not claim_task(PACKAGE_DIR)
    assert not claim_task(PACKAGE_DIR)


def test_same_files_compares_every_file_but_bytecode(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        (root / "sub").mkdir(parents=True)
        (root / "mod.py").write_text("x = 1\n")
        (root / "sub" / "data.txt").write_text("data\n")
    (first / "__pycache__").mkdir()
    (first / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert same_files(first, second)
    (second / "sub" / "data.txt").write_text("date\n")
    assert not same_files(first, second)
    (second / "sub" / "data.txt").write_text("data\n")
    (second / "extra.py").write_text("")
    assert not same_files(first, second)
    with offer_task() as offer:
        assert not claim_task(second) and not offer.claimed


def test_copier_update_runs_the_hook_in_its_throwaway_renders_only_for_apps(tmp_path: Path, capfd):
    """copier runs the task in the project and in its renders of the old and new version; the hook
    has work in those renders only when apps need their nginx files (copier.yml's `when:`)."""
    template = make_template_repo(tmp_path / "template")
    edit(
        template,
        "scaffold/hook.py",
        "    root = (project_dir or Path.cwd()).resolve()\n",
        "    root = (project_dir or Path.cwd()).resolve()\n    print(f'hook ran in {root.name}')\n",
    )
    release(template, "v1.1.0")
    project = tmp_path / "sso"
    data = {"domain": "sso.example.test", "acme_email": "admin@example.test"}
    data["project_name"] = unique_name("ip")
    copier.run_copy(str(template), str(project), data=data, defaults=True, unsafe=True, quiet=True)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "new")
    capfd.readouterr()

    def hook_runs() -> list[str]:
        printed = "".join(capfd.readouterr())
        runs = [line.removeprefix("hook ran in ") for line in printed.splitlines() if "hook ran" in line]
        return [run.rpartition(".")[0] if run.startswith("copier.") else run for run in runs]

    copier.run_update(str(project), defaults=True, overwrite=True, unsafe=True, skip_answered=True)
    assert hook_runs() == ["sso"], "the hook ran in a throwaway render"
    assert "AUTHENTIK_SECRET_KEY" in (project / ".env").read_text()

    apps = {"whoami": {"host": "whoami.example.test", "upstream": "http://whoami:80"}}
    copier.run_update(str(project), data={"apps": apps}, defaults=True, overwrite=True, unsafe=True)
    runs = hook_runs()  # the render of the old answers has no app: no hook there
    assert sorted(runs) == ["copier._main.new_copy", "sso"], runs
    assert (project / "nginx/conf.d/apps/whoami.conf").is_file()
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "whoami")

    copier.run_update(str(project), defaults=True, overwrite=True, unsafe=True, skip_answered=True)
    runs = hook_runs()
    assert sorted(runs) == ["copier._main.new_copy", "copier._main.old_copy", "sso"], runs
    assert (project / "nginx/conf.d/apps/whoami.conf").is_file()
