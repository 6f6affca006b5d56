"""`scaffold update`: take a stack to a newer template version or authentik release.

Order matters, so that a failure at any point leaves the user with what they had:
1. preflight checks that change nothing (each failure says how to fix it);
   with --apply, when the authentik tag or the template (so maybe the PostgreSQL image) changes,
   a `scaffold backup` archive of the database and files as they are;
2. a backup of .env, the answers and every tracked file, with a one-line restore command,
   printed before anything is touched;
3. `copier update` through copier's API with the tasks skipped (they would run three times);
4. the .env merge and subnet detection, once, in the real project;
5. the conflicts, `docker compose config`, and the commands that apply the change.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from scaffold import output
from scaffold.answers import Answers, load_answers
from scaffold.errors import EXIT_FAILED, EXIT_OK, ProjectError, TemplateError, UsageError
from scaffold.gitutil import conflicted_files, dirty_paths, git, is_repo_root, tracked_files
from scaffold.layout import ProjectLayout
from scaffold.newproject import check_data_keys, is_url, template_questions
from scaffold.releases import is_known_line, is_supported, parse_version, skipped_lines

#: Exit code when the update was applied but left conflicts or problems to resolve.
EXIT_NEEDS_ATTENTION = 3
APPLY_COMMANDS = "docker compose pull && docker compose up -d --remove-orphans"
_TAG_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)")


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


def _tag_version(text: str | None):
    from packaging.version import InvalidVersion, Version

    match = _TAG_VERSION.match(text or "")
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


def template_tags(source: str) -> list[str]:
    """The template's version tags; raises when the source cannot be reached."""
    if is_url(source):
        result = subprocess.run(
            ["git", "ls-remote", "--tags", "--refs", source],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        if result.returncode != 0:
            raise TemplateError(
                f"the template source {source} cannot be reached: {result.stderr.strip()}",
                hint="check the network and the URL in .copier-answers.yml (_src_path)",
            )
        return [line.split("refs/tags/", 1)[1] for line in result.stdout.splitlines() if "refs/tags/" in line]
    path = Path(source)
    if not path.is_absolute():
        raise TemplateError(
            f"the template source '{source}' in .copier-answers.yml is a relative path, "
            "which copier cannot resolve",
            hint="edit _src_path in .copier-answers.yml to the template's absolute path or git URL, "
            "commit, retry",
        )
    if not (path / "copier.yml").is_file():
        raise TemplateError(
            f"the template source {source} is not there any more",
            hint="point _src_path in .copier-answers.yml at the template's current clone or URL, "
            "commit, retry",
        )
    return [line for line in git(path, "tag", "--list").stdout.splitlines() if line]


def _is_commitish(repo: Path, ref: str) -> bool:
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).returncode == 0


def preflight(opts: UpdateOptions) -> UpdatePlan:
    """Every check that can fail before anything is touched."""
    project = opts.project_dir
    if not project.is_dir():
        raise ProjectError(f"{project} is not a folder", hint="give the folder of a generated stack")
    answers = load_answers(project)
    if not is_repo_root(project):
        raise ProjectError(
            f"{project} is not a git repository; updates merge template changes through git",
            hint=f"cd {project} && git init && git add -A && git commit -m 'Before scaffold update'",
        )
    dirty = dirty_paths(project)
    if dirty:
        listed = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
        raise ProjectError(
            f"uncommitted changes in {project}: {listed}",
            hint="commit them (`git add -A && git commit -m 'My changes'`) or stash them "
            "(`git stash -u`), then retry",
        )
    if not answers.src_path:
        raise ProjectError("the answers file has no _src_path (template source)", hint="restore it from git")
    source = str(answers.src_path)
    tags = template_tags(source)
    check_data_keys(opts.data, template_questions(source))

    current = answers.commit
    target_ref = opts.to_ref
    if target_ref is None:
        versions = [(v, tag) for tag in tags if (v := _tag_version(tag)) is not None]
        target_ref = max(versions)[1] if versions else None
    elif target_ref not in tags and not is_url(source) and not _is_commitish(Path(source), target_ref):
        raise UsageError(
            f"the template has no version '{target_ref}'",
            hint=f"versions: {', '.join(sorted(tags, key=lambda t: _tag_version(t) or 0)) or 'none'}",
        )
    now, then = _tag_version(current), _tag_version(target_ref)
    if now is not None and then is not None and then < now:
        raise ProjectError(
            f"{target_ref} is older than the stack's template version {current}: "
            "downgrades are not supported",
            hint="restore an older backup from .scaffold/backups/ instead, or pick a newer --to",
        )

    data = dict(opts.data)
    warnings: list[str] = []
    if opts.authentik:
        warnings += _check_authentik(answers.authentik_version, opts.authentik, yes=opts.yes)
        data["authentik_version"] = opts.authentik
    return UpdatePlan(answers, source, current, target_ref, data, tuple(warnings))


def _check_authentik(current_text: str, target_text: str, *, yes: bool) -> list[str]:
    """authentik's upgrade rules: no downgrade, no skipped release line without --yes."""
    target = parse_version(target_text)
    current = parse_version(current_text)
    if target < current:
        raise ProjectError(
            f"authentik {target} is older than the running {current}: authentik does not support downgrades",
            hint="restore the database backup taken before the upgrade if you must go back",
        )
    if not is_supported(target):
        raise UsageError(
            f"authentik {target} is older than this template supports (2025.12)", hint="pick 2025.12 or newer"
        )
    warnings = []
    skipped = skipped_lines(current, target)
    if skipped:
        message = (
            f"going from {current} to {target} skips the release line(s) {', '.join(skipped)}; authentik's "
            "upgrade notes say to upgrade through every line in order, to its latest patch"
        )
        if not yes:
            raise ProjectError(
                message,
                hint=f"upgrade to each skipped line first (e.g. --authentik {skipped[0]}.<latest patch>), "
                "or pass --yes to accept the risk",
            )
        warnings.append(message)
    if not is_known_line(target):
        warnings.append(
            f"{target.year}.{target.month} is newer than the release lines scaffold knows: "
            "read its release notes"
        )
    return warnings


def _backup(layout: ProjectLayout) -> Path:
    """Copy .env, the answers and every tracked file; 0700 folders, secrets 0600."""
    from scaffold.fsutil import new_backup_dir

    target = new_backup_dir(layout.backups_dir, label="update")
    names = set(tracked_files(layout.root)) | {".env", ".scaffold/state.json"}
    for name in sorted(names):
        source = layout.root / name
        if not source.is_file() or source.is_symlink():
            continue
        destination = target / name
        destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        if name == ".env" or name.startswith(".scaffold/"):
            destination.chmod(0o600)
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
    return f"cd {layout.root} && git reset -q --hard && git clean -qfd && cp -a {backup}/. ."


def _run_copier_update(project: Path, plan: UpdatePlan, conflict: str, *, quiet: bool = False) -> None:
    import copier
    from copier.errors import CopierError

    try:
        copier.run_update(
            str(project),
            data=plan.data,
            defaults=True,
            overwrite=True,
            unsafe=True,
            conflict=conflict,
            vcs_ref=plan.target_ref,
            skip_answered=True,
            skip_tasks=True,
            quiet=quiet,
        )
    except ValueError as exc:
        raise UsageError(f"invalid answer {str(exc).replace('Validation error for question ', '')}") from None
    except CopierError as exc:
        raise TemplateError(f"copier update failed: {exc}") from None


def _compose_check(project: Path) -> str | None:
    """`docker compose config` output when it fails; None when fine or Compose is absent."""
    if shutil.which("docker") is None:
        return None
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"], cwd=project, capture_output=True, text=True, check=False
    )
    message = (result.stderr or result.stdout).strip()
    no_plugin = ("is not a docker command", "unknown command: docker compose")
    if result.returncode == 0 or any(text in message for text in no_plugin):  # no Compose v2: not checked
        return None
    return message


def run_template_detect(project: Path, *, dry_run: bool = False) -> int:
    """Run `scaffold detect` with the code of the template version the project now has.

    A new template version may add keys to `.env`; only its own code knows them. So the
    detection runs from a checkout of the template at the project's recorded commit, like the
    copier task would, but once and in the real project. Falls back to this scaffold's own code
    when that commit cannot be checked out (e.g. a template with uncommitted changes).
    """
    answers = load_answers(project)
    args = ["detect", str(project), *(["--dry-run"] if dry_run else [])]
    with tempfile.TemporaryDirectory(prefix="scaffold-template.") as tmp:
        checkout = Path(tmp) / "template"
        cloned = git(
            Path(tmp), "clone", "-q", "--no-checkout", str(answers.src_path), str(checkout), check=False
        )
        if cloned.returncode == 0 and answers.commit:
            checked = git(checkout, "checkout", "-q", answers.commit, check=False)
            if checked.returncode == 0 and (checkout / "scaffold" / "__main__.py").is_file():
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                # -P and cwd: neither the current folder nor an installed scaffold may shadow the checkout.
                command = [sys.executable, "-P", "-m", "scaffold", *args]
                return subprocess.run(command, env=env, cwd=project, check=False).returncode
    output.status("info", "the template's own code at this version is not available; using this scaffold's")
    from scaffold.cli import main

    return main(args)


def _dry_run(opts: UpdateOptions, plan: UpdatePlan) -> int:
    """Run the whole update on a throwaway clone and report what it would change."""
    layout = ProjectLayout(opts.project_dir)
    with tempfile.TemporaryDirectory(prefix="scaffold-dry-run.") as tmp:
        clone = Path(tmp) / opts.project_dir.name
        git(Path(tmp), "clone", "-q", "--no-hardlinks", str(opts.project_dir), str(clone))
        for name in (".env", ".scaffold/state.json"):
            if (layout.root / name).is_file():
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(layout.root / name, clone / name)
        _run_copier_update(clone, plan, opts.conflict, quiet=True)
        changed = dirty_paths(clone)
        conflicts = (
            conflicted_files(clone)
            if opts.conflict == "inline"
            else [p for p in changed if p.endswith(".rej")]
        )
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
    return EXIT_OK


def run_update_command(opts: UpdateOptions) -> int:
    plan = preflight(opts)
    for warning in plan.warnings:
        output.status("warn", warning)
    if opts.dry_run:
        return _dry_run(opts, plan)

    archive = _database_backup(opts.project_dir) if opts.apply and _may_migrate(plan) else None
    layout = ProjectLayout(opts.project_dir)
    backup = _backup(layout)
    output.status("ok", f"backup: {backup}")
    output.say(f"      restore with: {restore_command(layout, backup)}")

    _run_copier_update(opts.project_dir, plan, opts.conflict)
    attention = run_template_detect(opts.project_dir) != 0
    conflicts = (
        conflicted_files(opts.project_dir)
        if opts.conflict == "inline"
        else sorted(str(path.relative_to(opts.project_dir)) for path in opts.project_dir.rglob("*.rej"))
    )
    for name in conflicts:
        attention = True
        how = (
            "edit it to keep what you want between the <<<<<<< / >>>>>>> markers, then `git add` it"
            if opts.conflict == "inline"
            else "apply the rejected hunks by hand, then delete the .rej file"
        )
        output.status("warn", f"conflict in {name}: {how}")
    compose_error = _compose_check(opts.project_dir) if not conflicts else None
    if compose_error:
        attention = True
        output.status("fail", f"`docker compose config` fails after the update:\n{compose_error}")
    output.say(
        "review the changes with `git diff`, then commit them: git add -A && git commit -m 'scaffold update'"
    )
    if opts.apply and not attention:
        if archive is not None:
            output.say(f"to go back after the apply: scaffold restore {archive} {opts.project_dir} --yes")
        result = subprocess.run(APPLY_COMMANDS, shell=True, cwd=opts.project_dir, check=False)
        return EXIT_OK if result.returncode == 0 else EXIT_FAILED
    output.say(f"apply it with: {APPLY_COMMANDS}")
    return EXIT_NEEDS_ATTENTION if attention else EXIT_OK
