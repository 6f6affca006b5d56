"""nginx's file per app (nginx/conf.d/apps/NAME.conf), written from the `apps` answer.

copier renders one file per template file and cannot render one per item of a list, so the
server blocks are written here, from scaffold/apptemplates/ in the same checkout (the copier
task and `scaffold update` run this module from the template version the project has), with
the same Jinja filters copier uses. Why a file per app rather than one file for all: a user
reads, diffs and disables one app at a time, and nginx's error messages name the app's file.
The files are derived data, like a build output: rewritten on every run, and files of apps that
are no longer in the answer are deleted (only files carrying this module's marker, so a file the
user put there is left alone). The user's own additions live in nginx/custom/apps/NAME.d/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaffold.answer_rules import TEMPLATE_FILTERS, AnswerProblem, App, parse_apps
from scaffold.fsutil import atomic_write_text

APPS_DIR = Path("nginx/conf.d/apps")
CUSTOM_DIR = Path("nginx/custom/apps")
TEMPLATE = Path(__file__).resolve().with_name("apptemplates") / "app.conf.jinja"
#: The first line of every file this module writes; stale files are recognized by it.
MARKER = "# App `"


def render_app(app: App, answers: dict[str, Any]) -> str:
    """One app's nginx configuration, rendered with copier's filters."""
    import jinja2

    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters.update(TEMPLATE_FILTERS)
    context = {
        "enable_ipv6": False,
        "upstream_scheme": "https",
        "web_path": "/",
        "acme_challenge": "http",
        "acme_wildcard": False,
        **answers,
        "app": app,
    }
    context.setdefault("public_url", f"https://{answers.get('domain', '')}")
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(context)


def write_app_files(project: Path, answers: dict[str, Any]) -> list[str]:
    """Write every app's file and delete stale ones; returns what changed (relative paths).

    Raises AnswerProblem when the `apps` answer is not valid (copier's validator refuses it first).
    """
    apps = parse_apps(answers.get("apps"), domain=str(answers.get("domain", "")))
    folder = project / APPS_DIR
    changed: list[str] = []
    wanted = {f"{app.name}.conf": render_app(app, answers) for app in apps}
    if wanted:
        folder.mkdir(parents=True, exist_ok=True)
        (project / CUSTOM_DIR).mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text, mode=0o644)
            changed.append(str(APPS_DIR / name))
    for path in sorted(folder.glob("*.conf")) if folder.is_dir() else []:
        if path.name not in wanted and _is_ours(path):
            path.unlink()
            changed.append(str(APPS_DIR / path.name))
    return changed


def _is_ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def main(project: Path, *, quiet: bool = False) -> int:
    """`scaffold render-apps DEST` (run by `scaffold update` from the template's checkout)."""
    from scaffold import output
    from scaffold.answers import load_answers

    answers = load_answers(project)
    try:
        changed = write_app_files(project, answers.raw or {})
    except AnswerProblem as problem:
        output.status("fail", f"apps: {problem}")
        return 1
    for name in [] if quiet else changed:
        output.status("ok", f"wrote {name}" if (project / name).exists() else f"removed {name}")
    return 0


__all__ = ["AnswerProblem", "main", "render_app", "write_app_files"]
