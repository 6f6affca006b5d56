"""`scaffold app add/remove/list`: edit the `apps` answer through `scaffold update`.

An app is an answer, so adding one is an update to the project's own template version with a new
`apps` value: the same preflight, lock, backup, restore on failure and merge of the user's edits
as `scaffold update`; then a commit, so the next update starts from a clean work tree. Every app
is checked by the answer rule (answer_rules.parse_apps) before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scaffold import output
from scaffold.answer_rules import AnswerProblem, App, parse_apps
from scaffold.answers import Answers, load_answers
from scaffold.errors import EXIT_OK, UsageError


def app_settings(app: App) -> dict[str, Any]:
    """The app's entry in the answer: host and upstream, and only the options that differ."""
    entry: dict[str, Any] = {"host": app.host, "upstream": app.upstream}
    if not app.websockets:
        entry["websockets"] = False
    if app.bypass:
        entry["bypass"] = list(app.bypass)
    if not app.identity_headers:
        entry["identity_headers"] = False
    if app.group:
        entry["group"] = app.group
    return entry


def _current_apps(answers: Answers) -> dict[str, Any]:
    apps = (answers.raw or {}).get("apps") or {}
    return dict(apps) if isinstance(apps, dict) else {}


def _checked(apps: dict[str, Any], answers: Answers) -> tuple[App, ...]:
    try:
        return parse_apps(apps, domain=answers.domain)
    except AnswerProblem as problem:
        raise UsageError(problem.message, hint=problem.fix) from None


def add_app(project: Path, spec: App) -> int:
    answers = load_answers(project)
    apps = _current_apps(answers)
    if spec.name in apps:
        raise UsageError(
            f"an app named {spec.name} exists already",
            hint=f"choose another name, or `scaffold app remove {spec.name}` first",
        )
    apps[spec.name] = app_settings(spec)
    _checked(apps, answers)
    return _update(project, answers, apps, f"scaffold app add {spec.name}")


def remove_app(project: Path, name: str) -> int:
    answers = load_answers(project)
    apps = _current_apps(answers)
    if name not in apps:
        listed = ", ".join(apps) or "none"
        raise UsageError(f"there is no app named {name}", hint=f"the apps are: {listed}")
    del apps[name]
    return _update(project, answers, apps, f"scaffold app remove {name}")


def list_apps(project: Path) -> int:
    answers = load_answers(project)
    apps = _checked(_current_apps(answers), answers)
    if not apps:
        output.say("no apps; add one with: scaffold app add NAME --host HOST --upstream http://SERVICE:PORT")
        return EXIT_OK
    for app in apps:
        options = [
            *([] if app.websockets else ["no websockets"]),
            *([f"bypass {' '.join(app.bypass)}"] if app.bypass else []),
            *([] if app.identity_headers else ["no identity headers"]),
            *([f"group {app.group}"] if app.group else []),
        ]
        output.say(
            f"{app.name}\thttps://{app.host} -> {app.upstream}"
            + (f"\t({'; '.join(options)})" if options else "")
        )
    return EXIT_OK


def _update(project: Path, answers: Answers, apps: dict[str, Any], message: str) -> int:
    """`scaffold update` to the project's own template version with the new answer, then a commit."""
    from scaffold.gitutil import git
    from scaffold.update import UpdateOptions, run_update_command

    code = run_update_command(
        UpdateOptions(project_dir=project, to_ref=answers.commit, data={"apps": json.dumps(apps)})
    )
    if code != EXIT_OK:
        return code
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)
    output.status("ok", f"committed: {message}")
    output.say(
        "on a running stack this takes effect by itself within seconds: nginx reloads, certbot gets the "
        "certificate, authentik applies blueprints/scaffold-apps.yaml"
    )
    return EXIT_OK
