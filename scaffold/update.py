"""`scaffold update`: take a stack to a newer template version or authentik release.

Order matters, so that a failure at any point leaves the user with what they had:
1. preflight checks that change nothing (each failure says how to fix it);
   with --apply, when the authentik tag or the template (so maybe the PostgreSQL image) changes,
   a `scaffold backup` archive of the database and files as they are;
2. a backup of .env, the answers and every tracked file, with a one-line restore command,
   printed before anything is touched;
3. `copier update` through copier's API with the tasks skipped (they would run three times);
4. the .env merge and subnet detection, once, in the real project;
5. when the template moved the postgresql image to another major and a database exists,
   compose.yaml keeps the image the data was made by (see "PostgreSQL majors" below);
6. the conflicts, `docker compose config`, and the commands that apply the change; with --apply,
   first `scaffold db upgrade` onto the template's new image when step 5 kept the old one.
The whole run holds `.scaffold/update.lock`, so two updates never interleave. When copier or
the detection fails after the backup, the backup is put back before the error is reported, so
exit code 1 always means "your files are as they were" (but for a failed database move with
--apply, whose own undo leaves compose.yaml and the database on the old major, as it says).

PostgreSQL majors: the database move runs here, after copier, in the real project folder, and not
as a copier migration. A migration would also run in `--dry-run`'s throwaway clone, whose Compose
project name is the real deployment's, so any Docker step in it would act on the real stack; and
it would run inside copier's merge, before the .env merge and the checks above. Here a dry run only
reads (the running server's version, the volume list), and the move happens only with --apply,
after the `scaffold backup` archive. The template's guard migration (scaffold.migrations) refuses a
plain `copier update` that would change the major, since nothing would move the data then.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from scaffold import output, template_source
from scaffold.answer_rules import answer_problems
from scaffold.answers import Answers, load_answers, public_url_update
from scaffold.detect import apply_smtp_password, require_unambiguous_env
from scaffold.errors import (
    EXIT_FAILED,
    EXIT_NEEDS_ATTENTION,
    EXIT_OK,
    ProjectError,
    ScaffoldError,
    UsageError,
)
from scaffold.fsutil import exclusive_lock, refuse_symlink
from scaffold.gitutil import conflicted_files, dirty_paths, git, index_lock, is_repo_root, tracked_files
from scaffold.layout import ProjectLayout
from scaffold.migrations import DRIVER_ENV
from scaffold.newproject import check_data_keys, missing_stack_keys
from scaffold.releases import check_upgrade

if TYPE_CHECKING:
    from scaffold.dbupgrade import TemplateMove

APPLY_COMMANDS = "docker compose pull && docker compose up -d --remove-orphans"
#: Seconds an update waits for another scaffold update of the same project before giving up.
LOCK_WAIT = 5.0
COMPOSE_TIMEOUT = 60.0
COMPOSE_FILE = "compose.yaml"


@dataclass(frozen=True)
class UpdateOptions:
    project_dir: Path
    to_ref: str | None = None
    authentik: str | None = None
    conflict: str = "inline"
    dry_run: bool = False
    yes: bool = False
    apply: bool = False
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdatePlan:
    answers: Answers
    source: str
    current: str | None
    target_ref: str | None
    data: dict[str, str]
    warnings: tuple[str, ...] = ()


def preflight(opts: UpdateOptions) -> UpdatePlan:
    """Every check that can fail before anything is touched."""
    project = opts.project_dir
    answers = _require_project(project)
    require_unambiguous_env(project)  # the .env merge at the end would stop; stop before copier runs
    _check_work_tree(project)
    if not answers.src_path:
        raise ProjectError("the answers file has no _src_path (template source)", hint="restore it from git")
    source = answers.src_path
    tags = template_source.template_tags(source)
    questions = template_source.template_questions(source)
    check_data_keys(opts.data, questions)
    _check_stale_answers(answers, opts.data)
    target_ref = _target_ref(opts.to_ref, answers.commit, source, tags)
    data = dict(opts.data)
    if questions is None or "public_url" in questions:
        data.update(public_url_update(answers, data))
    warnings: list[str] = []
    authentik = _authentik_target(opts)
    if authentik is not None and authentik != answers.authentik_version:
        warnings += check_upgrade(answers.authentik_version, authentik, yes=opts.yes)
    if authentik is not None:
        data["authentik_version"] = authentik
    return UpdatePlan(answers, source, answers.commit, target_ref, data, tuple(warnings))


def _check_stale_answers(answers: Answers, data: dict[str, str]) -> None:
    """Refuse answers this template's rules reject: copier would silently replace them with defaults."""
    stale = {key: problem for key, problem in answer_problems(answers.raw or {}).items() if key not in data}
    if stale:
        raise UsageError(
            "the answers file holds answers this template refuses: " + "; ".join(stale.values()),
            hint="give each a valid value: "
            + " ".join(f"--data {key}=..." for key in stale)
            + " (or restore the answers file from git)",
        )


def _check_work_tree(project: Path) -> None:
    """A git work tree copier can merge into: a repository, committed, no other git at work, a .env file."""
    if not is_repo_root(project):
        raise ProjectError(
            f"{project} is not a git repository; updates merge template changes through git",
            hint=f"cd {shlex.quote(str(project))} && git init && git add -A "
            "&& git commit -m 'Before scaffold update'",
        )
    env_file = ProjectLayout(project).env_file
    if env_file.exists() and not env_file.is_file():
        raise ProjectError(
            f"{env_file} is not a file: the update could not bring it up to date",
            hint="move it out of the way, put your .env back (from .scaffold/backups/ if need be), run again",
        )
    lock = index_lock(project)
    if lock is not None:
        raise ProjectError(
            f"{lock} exists: another git command is working in {project}, or one crashed and left it",
            hint="wait for the other git command to finish; if none is running, delete it: "
            f"rm {shlex.quote(str(lock))}",
        )
    dirty = dirty_paths(project)
    if dirty:
        listed = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
        raise ProjectError(
            f"uncommitted changes in {project}: {listed}",
            hint="commit them (`git add -A && git commit -m 'My changes'`) or stash them "
            "(`git stash -u`), then retry",
        )


def _require_project(project: Path) -> Answers:
    """The project's answers; refuses a path that is not a generated project (before any lock is made)."""
    if not project.is_dir():
        raise ProjectError(f"{project} is not a folder", hint="give the folder of a generated stack")
    for path in ProjectLayout(project).scaffold_paths():  # before the lock: a refusal writes nothing
        refuse_symlink(path)
    return load_answers(project)


def _target_ref(to_ref: str | None, current: str | None, source: str, tags: list[str]) -> str | None:
    """The template version to update to (default: the newest release); refuses a downgrade."""
    if to_ref is None:
        newest = template_source.newest_release(tags)
        target = newest[0] if newest else None
    elif to_ref in tags or template_source.has_ref(source, to_ref):
        target = to_ref
    else:
        raise UsageError(
            f"the template has no version '{to_ref}'",
            hint=f"versions: {', '.join(template_source.sorted_versions(tags)) or 'none'}",
        )
    now, _ = template_source.describe_version(current)
    then = template_source.tag_version(target)
    if now is not None and then is not None and then < now:
        raise ProjectError(
            f"{target} is older than the stack's template version {current}: downgrades are not supported",
            hint="restore an older backup from .scaffold/backups/ instead, or pick a newer --to",
        )
    return target


def _authentik_target(opts: UpdateOptions) -> str | None:
    """The authentik release asked for, by `--authentik` or `--data authentik_version` (the same rule)."""
    asked = {value for value in (opts.authentik, opts.data.get("authentik_version")) if value is not None}
    if len(asked) > 1:
        raise UsageError(
            f"--authentik {opts.authentik} and --data authentik_version={opts.data['authentik_version']} "
            "disagree",
            hint="give the authentik release once",
        )
    return asked.pop() if asked else None


def _backup(layout: ProjectLayout) -> Path:
    """Copy .env, the answers and every tracked file with their modes; secrets 0600.

    Folders in the backup get the modes of the project's folders, so that the restore command
    (`cp -a`) puts back exactly what was there. The backup lives under `.scaffold/backups/`, which
    is 0700, so only the owner can reach it.
    """
    from scaffold.fsutil import new_backup_dir

    names = set(tracked_files(layout.root)) | {".env", ".scaffold/state.json"}
    folders: set[str] = set()
    target = layout.backups_dir
    try:
        target = new_backup_dir(layout.backups_dir, label="update")
        for name in sorted(names):
            source = layout.root / name
            if not source.is_file() or source.is_symlink():
                continue
            destination = target / name
            destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            folders.update(str(parent) for parent in Path(name).parents)
            shutil.copy2(source, destination)
            if name == ".env" or name.startswith(".scaffold/"):
                destination.chmod(0o600)
        for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):  # deepest first
            os.chmod(target / folder, stat.S_IMODE((layout.root / folder).stat().st_mode))
    except OSError as exc:
        raise ProjectError(
            f"cannot back up the project into {target}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            hint="check that .scaffold/backups is a folder this user can write, that every file of the "
            "project is readable, and that the disk is not full; then retry",
        ) from None
    return target


def _may_migrate(plan: UpdatePlan) -> bool:
    """Whether applying may change the authentik tag (one-way migrations) or, with a new template
    version, the PostgreSQL image: then a database dump must exist before `up -d`."""
    tag = plan.data.get("authentik_version", plan.answers.authentik_version)
    return tag != plan.answers.authentik_version or (plan.target_ref or plan.current) != plan.current


def _database_backup(project: Path) -> Path:
    """`scaffold backup` before anything changes, so that the files in it match the database."""
    from scaffold.backup import BackupOptions, run_backup

    output.status("info", "the update may change authentik or PostgreSQL: backing up the database first")
    try:
        return run_backup(BackupOptions(project_dir=project))
    except ProjectError as exc:
        raise ProjectError(
            f"no backup could be taken, so nothing was updated: {exc.message}",
            hint=f"{exc.hint}; or update without --apply and apply it yourself after a backup",
        ) from None


def restore_command(layout: ProjectLayout, backup: Path) -> str:
    """The shell command that puts the project back as it was when `backup` was taken."""
    root, files = shlex.quote(str(layout.root)), shlex.quote(f"{backup}/.")
    return f"cd {root} && git reset -q --hard && git clean -qfd && cp -a {files} ."


def _restore(layout: ProjectLayout, backup: Path) -> bool:
    """Put the project back as it was; True when it is (or never stopped being) as it was."""
    if _unchanged(layout, backup):
        return True
    command = restore_command(layout, backup)
    return subprocess.run(command, shell=True, capture_output=True, check=False).returncode == 0


def _unchanged(layout: ProjectLayout, backup: Path) -> bool:
    """True when the failed update wrote nothing: a clean work tree and the same .env."""
    try:
        if dirty_paths(layout.root):
            return False
        saved, current = backup / ".env", layout.env_file
        if saved.exists() != current.exists():
            return False
        return not saved.exists() or saved.read_bytes() == current.read_bytes()
    except (ScaffoldError, OSError):
        return False


def _run_copier_update(project: Path, plan: UpdatePlan, conflict: str, *, quiet: bool = False) -> None:
    """copier update, telling the template's migrations that scaffold drives it (DRIVER_ENV).

    copier starts migrations through plumbum, whose environment is a copy of os.environ taken when
    plumbum was imported: the variable goes into that copy, for this call only.
    """
    from plumbum import local

    with local.env(**{DRIVER_ENV: "1"}):
        _copier_update(project, plan, conflict, quiet=quiet)


def _copier_update(project: Path, plan: UpdatePlan, conflict: str, *, quiet: bool) -> None:
    from scaffold.copierrun import run_update

    run_update(
        project,
        plan.data,
        defaults=True,
        conflict=conflict,
        vcs_ref=plan.target_ref,
        skip_answered=True,
        skip_tasks=True,
        quiet=quiet,
    )


def run_template_detect(project: Path, *, dry_run: bool = False, apps: bool = False) -> int:
    """Run `scaffold detect` with the code of the template version the project now has.

    A new template version may add keys to `.env`; only its own code knows them. So the
    detection runs from a checkout of the template at the project's recorded commit, like the
    copier task would, but once and in the real project; in this process when the checkout's
    `scaffold/` holds exactly this package's files (no second Python for the same code). Falls back
    to this scaffold's own code when that commit cannot be checked out (e.g. a template with
    uncommitted changes).

    `apps`: then also write nginx's file per app (`scaffold render-apps`, see scaffold/appfiles.py),
    which the skipped copier task would write; a template version from before apps has none.
    Returns non-zero when either needs attention.
    """
    answers = load_answers(project)
    args = ["detect", str(project), *(["--dry-run"] if dry_run else [])]
    with template_source.checkout(str(answers.src_path), answers.commit) as checkout:
        if checkout is not None and (checkout / "scaffold" / "__main__.py").is_file():
            from scaffold.inprocess import PACKAGE_DIR, same_files

            if same_files(checkout / "scaffold", PACKAGE_DIR):
                return _detect_here(project, dry_run=dry_run, apps=apps)
            env = {**os.environ, "PYTHONPATH": str(checkout)}
            # -P and cwd: neither the current folder nor an installed scaffold may shadow the checkout.
            command = [sys.executable, "-P", "-m", "scaffold"]
            code = subprocess.run([*command, *args], env=env, cwd=project, check=False).returncode
            if apps and (checkout / "scaffold" / "appfiles.py").is_file():
                rendered = [*command, "render-apps", str(project)]
                code = subprocess.run(rendered, env=env, cwd=project, check=False).returncode or code
            return code
    output.status("info", "the template's own code at this version is not available; using this scaffold's")
    from scaffold.detect import run_detect_command

    code = run_detect_command(project, dry_run=dry_run)
    if apps:
        from scaffold.appfiles import main as render_apps

        code = render_apps(project) or code
    return code


def _detect_here(project: Path, *, dry_run: bool, apps: bool) -> int:
    """`scaffold detect` (and `render-apps`) in this process, ending as the commands would: a
    ScaffoldError is its message and exit code, as from the subprocess, not an exception that rolls
    the update back."""
    from scaffold.appfiles import main as render_apps
    from scaffold.detect import run_detect_command

    try:
        code = run_detect_command(project, dry_run=dry_run)
        return (render_apps(project) or code) if apps else code
    except ScaffoldError as exc:
        output.error(exc.message, exc.hint)
        return exc.exit_code


def _conflicts(project: Path, conflict: str) -> list[str]:
    if conflict == "inline":
        return conflicted_files(project)
    return sorted(str(path.relative_to(project)) for path in project.rglob("*.rej"))


def _dry_run(opts: UpdateOptions, plan: UpdatePlan) -> int:
    """Run the whole update on a throwaway clone and report what it would change."""
    layout = ProjectLayout(opts.project_dir)
    with tempfile.TemporaryDirectory(prefix="scaffold-dry-run.") as tmp:
        clone = Path(tmp) / opts.project_dir.name
        git(Path(tmp), "clone", "-q", "--no-hardlinks", "--", str(opts.project_dir), str(clone))
        for name in (".env", ".scaffold/state.json"):
            if (layout.root / name).is_file():
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copy2(layout.root / name, clone / name)
                except OSError as exc:
                    raise ProjectError(
                        f"cannot read {layout.root / name}: {exc.strerror or exc}",
                        hint="run scaffold as the user who owns the project",
                    ) from None
        _run_copier_update(clone, plan, opts.conflict, quiet=True)
        move = _postgres_move(opts.project_dir, _compose_text(layout.root), clone)
        changed = dirty_paths(clone)
        conflicts = _conflicts(clone, opts.conflict)
        target = plan.target_ref or "HEAD"
        output.status(
            "info", f"dry run: {opts.project_dir} is unchanged. The update to {target} would change:"
        )
        for name in changed:
            output.say(f"      {name}" + ("  (conflict)" if name in conflicts else ""))
        if not changed:
            output.say("      no file")
        output.say("and in .env:")
        run_template_detect(clone, dry_run=True)
        if move is not None:
            move.describe(opts.project_dir, apply=opts.apply, dry_run=True)
    return EXIT_OK


def _compose_text(root: Path) -> str:
    path = root / COMPOSE_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _postgres_move(project: Path, old_text: str, rendered: Path) -> TemplateMove | None:
    """What the update's postgresql image means for `project`'s database (read-only; `rendered` is
    where copier wrote the update: the project itself, or the dry run's clone)."""
    from scaffold import dbupgrade

    return dbupgrade.plan_template_move(project, old_text, _compose_text(rendered))


def run_update_command(opts: UpdateOptions) -> int:
    # The SMTP password goes to .env in memory (apply_smtp_password), never through copier's files.
    smtp_password = opts.data.get("smtp_password") or None
    dns_secret = opts.data.get("acme_dns_secret") or None
    secret_questions = ("smtp_password", "acme_dns_secret")
    opts = replace(opts, data={key: value for key, value in opts.data.items() if key not in secret_questions})
    layout = ProjectLayout(opts.project_dir)
    _require_project(opts.project_dir)
    _check_dns_answers(opts, dns_secret)
    with exclusive_lock(layout.update_lock_file, timeout=LOCK_WAIT):
        plan = preflight(opts)
        for warning in plan.warnings:
            output.status("warn", warning)
        if opts.dry_run:
            if smtp_password is not None:
                output.status("info", "AUTHENTIK_EMAIL__PASSWORD in .env would be replaced (value not shown)")
            if dns_secret is not None:
                output.status("info", "the DNS provider's secret in .env would be set (value not shown)")
            return _dry_run(opts, plan)
        archive = _database_backup(opts.project_dir) if opts.apply and _may_migrate(plan) else None
        backup = _backup(layout)
        output.status("ok", f"backup: {backup}")
        output.say(f"      restore with: {restore_command(layout, backup)}")
        attention, move = _apply_or_restore(opts, plan, layout, backup, smtp_password, dns_secret)
        return _report(opts, attention, archive, move)


def _store_dns_secret(opts: UpdateOptions, secret: str) -> None:
    from scaffold.answer_rules import DNS_PROVIDERS
    from scaffold.detect import store_secret

    provider = opts.data.get("acme_dns_provider", load_answers(opts.project_dir).acme_dns_provider)
    if provider in DNS_PROVIDERS:  # else copier refuses the provider, and nothing is kept
        store_secret(opts.project_dir, DNS_PROVIDERS[provider].env_key, secret)


def _check_dns_answers(opts: UpdateOptions, secret: str | None) -> None:
    """The DNS challenge needs its settings and its secret, given now or already in .env."""
    from scaffold.answer_rules import dns_secret_stored
    from scaffold.newproject import check_dns_answers

    answers = {**(load_answers(opts.project_dir).raw or {}), **opts.data}
    stored = dns_secret_stored(opts.project_dir, answers.get("acme_dns_provider", "rfc2136"))
    check_dns_answers(answers, secret, stored=stored)


def _apply_or_restore(
    opts: UpdateOptions,
    plan: UpdatePlan,
    layout: ProjectLayout,
    backup: Path,
    smtp_password: str | None,
    dns_secret: str | None = None,
) -> tuple[bool, TemplateMove | None]:
    """copier update, the detection, a new SMTP password and the postgresql image; on any failure,
    put the backup back. A DNS secret goes into .env first, so that the detection writes certbot's
    credentials file from it.

    Returns whether the detection found something to fix, and what the template's postgresql image
    change means for the database (None when it did not change).
    """
    try:
        old_compose = _compose_text(layout.root)
        if dns_secret is not None:
            _store_dns_secret(opts, dns_secret)
        _run_copier_update(opts.project_dir, plan, opts.conflict)
        attention = run_template_detect(opts.project_dir, apps=True) != 0
        if smtp_password is not None:
            attention = not apply_smtp_password(opts.project_dir, smtp_password) or attention
        move = _postgres_move(opts.project_dir, old_compose, opts.project_dir)
        if move is not None and move.needs_upgrade:
            move.keep_old_image(opts.project_dir)  # never a new major's server on old data
        return attention, move
    except (Exception, KeyboardInterrupt) as exc:  # Ctrl-C or a bug too: never leave a half update
        restored = _restore(layout, backup)
        if not isinstance(exc, ScaffoldError):
            if restored:
                output.status("info", "the project is as it was before the update")
            raise
        if not restored:
            raise ScaffoldError(
                f"{exc.message}; putting the backup back failed too",
                hint=f"run the restore command printed above, then: {exc.hint or 'retry'}",
            ) from None
        raise type(exc)(f"{exc.message}; the project is as it was before the update", hint=exc.hint) from None


def _apply_commands(project_dir: Path) -> tuple[str, str]:
    """(what to tell the user, what `--apply` runs) to put the updated project into service: Compose's
    pull and up, or on Swarm `scaffold deploy` (the stack file needs its secrets and .env exported)."""
    if load_answers(project_dir).target == "swarm":
        return "scaffold deploy", f"{shlex.quote(sys.executable)} -m scaffold deploy"
    return APPLY_COMMANDS, APPLY_COMMANDS


def _report(
    opts: UpdateOptions,
    attention: bool,
    archive: Path | None = None,
    move: TemplateMove | None = None,
) -> int:
    """The database move, the checks, and what to run next; the exit code."""
    from scaffold import dbupgrade

    if move is not None:
        dbupgrade.describe_move(opts.project_dir, move, apply=opts.apply)
    attention = _needs_attention(opts) or attention
    output.say(
        "review the changes with `git diff`, then commit them: git add -A && git commit -m 'scaffold update'"
    )
    if opts.apply and not attention:
        if archive is not None:
            back = f"scaffold restore {shlex.quote(str(archive))} {shlex.quote(str(opts.project_dir))} --yes"
            output.say(f"to go back after the apply: {back}")
        if move is not None and move.is_upgrade and not _moved(opts.project_dir, move):
            return EXIT_FAILED
        command = _apply_commands(opts.project_dir)[1]
        result = subprocess.run(command, shell=True, cwd=opts.project_dir, check=False)
        return EXIT_OK if result.returncode == 0 else EXIT_FAILED
    output.say(f"apply it with: {_apply_commands(opts.project_dir)[0]}")
    return EXIT_NEEDS_ATTENTION if attention else EXIT_OK


def _needs_attention(opts: UpdateOptions) -> bool:
    """Missing .env keys, conflicts, `docker compose config`: True when any needs the user."""
    from scaffold.compose import check_config

    attention = False
    missing = missing_stack_keys(opts.project_dir)
    if missing:  # never report a project ready that `docker compose up` would refuse
        attention = True
        output.status(
            "fail",
            f".env lacks {', '.join(missing)}, which compose.yaml needs: correct what the "
            "messages above name, then run `scaffold detect`",
        )
    conflicts = _conflicts(opts.project_dir, opts.conflict)
    for name in conflicts:
        attention = True
        how = (
            "edit it to keep what you want between the <<<<<<< / >>>>>>> markers, then `git add` it"
            if opts.conflict == "inline"
            else "apply the rejected hunks by hand, then delete the .rej file"
        )
        output.status("warn", f"conflict in {name}: {how}")
        if name == COMPOSE_FILE:
            output.say(
                "      if you keep a postgresql image of another PostgreSQL major, move the database before "
                "`docker compose up`: scaffold db upgrade --to MAJOR --image IMAGE"
            )
    if not conflicts:
        compose = check_config(opts.project_dir, timeout=COMPOSE_TIMEOUT)
        if compose.state == "rejected":
            attention = True
            output.status("fail", f"`docker compose config` fails after the update:\n{compose.message}")
        elif compose.state == "timeout":
            output.status("warn", f"not checked: {compose.message}")
    return attention


def _moved(project: Path, move: TemplateMove) -> bool:
    """`scaffold db upgrade` onto the template's new image, before the stack is pulled and started."""
    from scaffold import dbupgrade

    try:
        dbupgrade.apply_template_move(project, move)
    except ScaffoldError as exc:
        output.error(
            f"the database was not moved to PostgreSQL {move.new_major}: {exc.message}",
            f"{exc.hint + '; ' if exc.hint else ''}the update's files are in place and compose.yaml "
            f"keeps {move.old_image}; once fixed: {dbupgrade.upgrade_command(project, move)}",
        )
        return False
    return True
