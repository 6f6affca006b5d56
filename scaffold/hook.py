"""The copier task: run after every `copier copy` and `copier update`.

Constraints (see ../shared notes on copier): copier runs tasks three times per update, twice
in throwaway replicas; a failing task makes copier delete a new destination; copier prints
task command lines. So this hook is idempotent, skips the replicas, reads Docker but never
changes it, takes no secret on its command line, and exits 0 whenever the problem is one the
user can fix later, after saying exactly what to run.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: copier renders the old and new template versions into temporary folders with these
#: prefixes during an update; `.env` is gitignored there, so nothing needs doing. (copier.yml's
#: `when:` skips the task there unless apps are answered: answer_rules.is_copier_replica; the
#: prefixes are written out here because the task must not import the rules to skip a replica.)
REPLICA_PREFIXES = ("copier._main.old_copy.", "copier._main.new_copy.")


def is_copier_replica(path: Path) -> bool:
    """True inside copier's temporary renders (the project may sit in a subfolder of one)."""
    return any(part.startswith(REPLICA_PREFIXES) for part in path.parts)


def main(project_dir: Path | None = None) -> int:
    root = (project_dir or Path.cwd()).resolve()
    if is_copier_replica(root):
        # The apps' nginx files belong to a render like copier's own files: copier diffs its render
        # of the old version against the project, and files missing from that render would count
        # as the user's additions and come back after the update.
        _write_app_files(root, quiet=True)
        return 0
    from scaffold import output
    from scaffold.detect import run_detect
    from scaffold.errors import ScaffoldError
    from scaffold.layout import ProjectLayout

    try:
        ProjectLayout(root).ensure_data_dirs()
        report = run_detect(root)
    except ScaffoldError as exc:
        output.status("warn", f"scaffold could not prepare .env: {exc.message}", stream=sys.stderr)
        if exc.hint:
            output.say(f"      fix: {exc.hint}; then run `scaffold detect` in {root}", stream=sys.stderr)
        return 0
    except Exception as exc:  # a bug must not make copier delete the user's new project
        output.status(
            "fail", f"scaffold hook failed unexpectedly: {type(exc).__name__}: {exc}", stream=sys.stderr
        )
        output.say(
            f"      the project is kept; run `scaffold detect` in {root} (and please report this)",
            stream=sys.stderr,
        )
        return 0
    output.print_detect_report(report)
    _write_app_files(root)
    return 0


def _write_app_files(root: Path, *, quiet: bool = False) -> None:
    """nginx's file per app (copier cannot render one file per list item): see scaffold/appfiles.py."""
    if not _may_have_apps(root):
        return  # no app answered and none written: nothing to do, and no answer rules to load
    from scaffold import output
    from scaffold.appfiles import main as render_apps
    from scaffold.errors import ScaffoldError

    try:
        render_apps(root, quiet=quiet)
    except (ScaffoldError, OSError) as exc:
        output.status("warn", f"scaffold could not write the apps' nginx files: {exc}", stream=sys.stderr)
        output.say(f"      fix it, then run `scaffold update` in {root}", stream=sys.stderr)


def _may_have_apps(root: Path) -> bool:
    """Whether the answers name an app or an app's nginx file exists (one to keep or delete)."""
    apps_dir = root / "nginx" / "conf.d" / "apps"  # scaffold.appfiles.APPS_DIR
    if apps_dir.is_dir() and any(apps_dir.glob("*.conf")):
        return True
    from scaffold.answers import load_answers
    from scaffold.errors import ScaffoldError

    try:
        return bool(load_answers(root).apps)
    except ScaffoldError:
        return True  # let the writer say what is wrong


if __name__ == "__main__":  # copier's task runs `python -P -m scaffold.hook`: no CLI parser to import
    sys.exit(main())
