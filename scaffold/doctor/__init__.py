"""`scaffold doctor`: check a deployment end to end and say how to fix each problem found.

Most support threads for authentik behind a proxy end in a handful of causes: the proxy is not in the
trusted networks, WebSocket headers are missing, the Host is wrong, DNS does not point here, port 80
is unreachable, or the certificate quietly expired. Each check below looks at one of them and reports
ok / warn / fail / skip with what it found and the fix. Check ids are a public interface (docs/doctor.md);
so is the `--json` document (schema `scaffold-doctor/1`).

Exit codes: 0 nothing failed (warnings allowed), 1 at least one check failed, 2 doctor could not run
at all (DEST is not a generated project). Doctor changes no file and no container, network or volume
(docs/doctor.md says what its probes leave behind), and never prints a secret.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from scaffold import output
from scaffold.doctor.core import FAIL, OK, SKIP, STATUSES, WARN, Check, Context, Outcome, Result, skip, warn
from scaffold.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ProjectError, ScaffoldError

SCHEMA_ID = "scaffold-doctor/1"
#: Groups that need the network or look at the host's ports; `--offline` skips them.
OFFLINE_GROUPS = ("network", "tls", "apps")
ID_WIDTH = 29

#: The `--json` document, as a JSON Schema (draft 2020-12). docs/doctor.md shows it; tests validate
#: doctor's output against it. Additive changes keep `scaffold-doctor/1`; anything else bumps it.
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "scaffold doctor report",
    "type": "object",
    "required": ["schema", "project", "offline", "summary", "exit_code", "error", "checks"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "project": {"type": "string"},
        "offline": {"type": "boolean"},
        "summary": {
            "type": "object",
            "required": list(STATUSES),
            "properties": {status: {"type": "integer", "minimum": 0} for status in STATUSES},
            "additionalProperties": False,
        },
        "exit_code": {"enum": [EXIT_OK, EXIT_FAILED, EXIT_USAGE]},
        "error": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["message", "fix"],
                    "properties": {"message": {"type": "string"}, "fix": {"type": ["string", "null"]}},
                    "additionalProperties": False,
                },
            ]
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "group", "status", "message", "fix"],
                "properties": {
                    "id": {"type": "string", "pattern": r"^[a-z]+\.[a-z0-9-]+(\.[a-z0-9-]+)?$"},
                    "group": {
                        "enum": ["files", "proxy", "trust", "versions", "network", "tls", "stack", "apps"]
                    },
                    "status": {"enum": list(STATUSES)},
                    "message": {"type": "string", "minLength": 1},
                    "fix": {"type": ["string", "null"]},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def all_checks() -> tuple[Check, ...]:
    """Every check, in report order. Imported here so that `scaffold --help` loads none of them."""
    from scaffold.doctor import acme, apps, backup, files, network, proxy, stack, tls, trust, versions

    return (
        *files.CHECKS,
        *backup.CHECKS,
        *proxy.CHECKS,
        *trust.CHECKS,
        *versions.CHECKS,
        *network.CHECKS,
        *tls.CHECKS,
        *acme.CHECKS,
        *stack.CHECKS,
        *apps.CHECKS,
    )


def check_ids() -> list[str]:
    return [check.id for check in all_checks()]


@dataclass(frozen=True)
class Report:
    project: Path
    offline: bool
    results: tuple[Result, ...]
    seconds: float = 0.0

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if any(r.status == FAIL for r in self.results) else EXIT_OK

    def by_id(self) -> dict[str, Result]:
        return {result.id: result for result in self.results}

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "project": str(self.project),
            "offline": self.offline,
            "summary": self.summary,
            "exit_code": self.exit_code,
            "error": None,
            "checks": [result.as_json() for result in self.results],
        }


def _run_one(ctx: Context, check: Check) -> Result:
    group = check.id.split(".", 1)[0]
    if ctx.offline and group in OFFLINE_GROUPS:
        outcome: Outcome = skip("not checked: --offline")
    else:
        try:
            outcome = check.run(ctx)
        except Exception as exc:  # one broken check must not hide the others
            outcome = warn(
                f"doctor could not run this check: {type(exc).__name__}: {exc}",
                "run doctor again; if this repeats, please report it with this line",
            )
    return Result(check.id, outcome.status, ctx.redact(outcome.message) or "", ctx.redact(outcome.fix))


def run_doctor(project_dir: Path, *, offline: bool = False) -> Report:
    """Run every check on the project in `project_dir`; raises ProjectError when it is not a project."""
    from scaffold.answers import load_answers

    started = time.monotonic()
    root = project_dir.resolve()
    if not root.is_dir():
        raise ProjectError(f"{root} is not a folder", hint="give the folder of a generated stack")
    ctx = Context(root=root, answers=load_answers(root), offline=offline)
    try:
        for check in all_checks():
            ctx.results[check.id] = _run_one(ctx, check)
    finally:
        ctx.close()
    return Report(root, offline, tuple(ctx.results.values()), time.monotonic() - started)


def error_document(project_dir: Path, offline: bool, exc: ScaffoldError) -> dict[str, Any]:
    """The `--json` document when doctor could not run at all (exit code 2)."""
    return {
        "schema": SCHEMA_ID,
        "project": str(project_dir),
        "offline": offline,
        "summary": dict.fromkeys(STATUSES, 0),
        "exit_code": EXIT_USAGE,
        "error": {"message": exc.message, "fix": exc.hint},
        "checks": [],
    }


def print_report(report: Report, *, stream: TextIO | None = None) -> None:
    """One line per check (status, id, what was found), then its fix, then a summary."""
    stream = stream or sys.stdout
    output.say(f"scaffold doctor: {report.project}" + (" (offline)" if report.offline else ""), stream=stream)
    last_skip_fix = None
    for result in report.results:
        output.status(result.status, f"{result.id:<{ID_WIDTH}} {result.message}", stream=stream)
        # A skip's fix ("start the stack ...") is said once for a run of skips with the same fix.
        repeated = result.status == SKIP and result.fix == last_skip_fix
        if result.fix and result.status != OK and not repeated:
            output.say(f"      {output.paint('fix:', 'bold', stream)} {result.fix}", stream=stream)
        last_skip_fix = result.fix if result.status == SKIP else None
    counts = report.summary
    line = (
        f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail, {counts[SKIP]} skip "
        f"({report.seconds:.1f} s)"
    )
    if counts[FAIL]:
        verdict = output.paint(f"{counts[FAIL]} problem(s) to fix", "fail", stream)
    elif counts[WARN]:
        verdict = output.paint("nothing failed; read the warnings", "warn", stream)
    else:
        verdict = output.paint("all good", "ok", stream)
    output.say(f"{line}: {verdict}", stream=stream)


def run_doctor_command(project_dir: Path, *, as_json: bool, offline: bool) -> int:
    """The CLI entry point: 0 nothing failed, 1 something failed, 2 could not run."""
    out, err = sys.stdout, sys.stderr  # looked up now, so that redirections apply
    try:
        report = run_doctor(project_dir, offline=offline)
    except ScaffoldError as exc:
        if as_json:
            print(json.dumps(error_document(project_dir, offline, exc), indent=2), file=out, flush=True)
        else:
            output.error(f"doctor cannot run: {exc.message}", exc.hint, stream=err)
        return EXIT_USAGE
    if as_json:
        print(json.dumps(report.as_json(), indent=2), file=out, flush=True)
    else:
        print_report(report, stream=out)
    return report.exit_code
