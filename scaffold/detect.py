"""`.env` ownership: create it, add what is missing, keep the proxy network right.

One run, under an exclusive lock: read `.env` (byte-exact), decide every value scaffold owns,
and write the file atomically (mode 0600) only when something changed, after a backup of
the previous file. Secrets are generated once and never changed or printed; a value the user
set is never overwritten; malformed lines are kept and reported. Where python-dotenv and Docker
Compose read different keys, nothing is generated or written (a key scaffold cannot see may be
a secret Compose uses). No path scaffold writes may be a symbolic link; a dry run writes nothing.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from scaffold import envkeys, output
from scaffold.answers import Answers, load_answers
from scaffold.dockerapi import DockerAPI, connect
from scaffold.envfile import EnvDocument, EnvProblem
from scaffold.errors import DockerUnavailable, EnvFileError
from scaffold.fsutil import (
    atomic_write_text,
    backup_file,
    exclusive_lock,
    read_bytes_no_follow,
    refuse_symlink,
    remove_stale_temp_files,
)
from scaffold.layout import ProjectLayout
from scaffold.network import decide_subnets
from scaffold.state import ScaffoldState

SECRET_COMMENT = "Generated once by scaffold; never shown, never regenerated. Keep a backup."
NETWORK_COMMENT = (
    "Managed by scaffold from Docker's view of the proxy network (see .env.example); "
    "end a line with `# pinned` to set it yourself."
)
#: Set (to "1", never to the secret) by `scaffold new` while copier runs the hook: the DNS secret it
#: holds in memory reaches .env right after, so its absence is not a problem to report yet.
DNS_SECRET_PENDING = "SCAFFOLD_DNS_SECRET_PENDING"
#: How messages name a secret given now (never its value).
_SECRET_WORDS = {envkeys.SMTP_PASSWORD: "SMTP password"}
UNVERIFIED = "unverified: Docker was unreachable; run `scaffold detect`"


@dataclass(frozen=True)
class Change:
    key: str
    old: str | None
    new: str
    secret: bool

    def describe(self) -> str:
        if self.secret:
            generated = not self.old and self.key in envkeys.GENERATORS
            return f"{self.key}: {'generated' if generated else 'set'} (value not shown)"
        return f"{self.key}: {self.new}" if self.old is None else f"{self.key}: {self.old} -> {self.new}"


@dataclass
class DetectReport:
    env_file: Path
    created: bool = False
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    problems: list[EnvProblem] = field(default_factory=list)
    docker_error: DockerUnavailable | None = None
    backup: Path | None = None
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and self.docker_error is None


def _plan_secrets(
    env: EnvDocument, docker: DockerAPI | None, answers: Answers, report: DetectReport
) -> dict[str, str]:
    """New secrets for the keys that have none. PG_PASS is never invented for an existing database."""
    planned: dict[str, str] = {}
    for key, generate in envkeys.GENERATORS.items():
        if env.get(key):
            continue
        if (
            key == envkeys.PG_PASS
            and docker is not None
            and docker.project_volume_exists(answers.project_name, "database")
        ):
            report.errors.append(
                f"{key} is missing from .env but the database volume of '{answers.project_name}' "
                "exists: a new password would lock authentik out of its database. fix: restore PG_PASS "
                "from a backup (.scaffold/backups/*/.env) or from wherever you keep your secrets"
            )
            continue
        planned[key] = generate()
    return planned


def _plan_answer_settings(
    env: EnvDocument, answers: Answers, state: ScaffoldState, report: DetectReport
) -> dict[str, str]:
    """Answer-derived values: added when missing; updated only while the user has not edited them."""
    planned: dict[str, str] = {}
    for key, wanted in envkeys.answer_settings(answers).items():
        current = env.get(key)
        if current is None:
            planned[key] = wanted
        elif current != wanted:
            if state.written.get(key) == current:
                planned[key] = wanted
            else:
                report.notes.append(f"{key}: kept your value {current!r} (the answers say {wanted!r})")
    return planned


def _apply(
    env: EnvDocument, key: str, value: str, *, secret: bool, comment: str | None, report: DetectReport
) -> None:
    old = env.get(key)
    try:
        changed = env.set(key, value, comment=comment if old is None else None)
    except EnvFileError as exc:
        report.errors.append(
            f"{key}: not updated: {exc.message}" + (f"; fix: {exc.hint}" if exc.hint else "")
        )
        return
    if changed:
        report.changes.append(Change(key, old, value, secret))


def _apply_group(
    env: EnvDocument, values: dict[str, str], *, secret: bool, comment: str | None, report: DetectReport
) -> None:
    """Set related keys; keys added together share one explanatory comment above the first."""
    for key, value in values.items():
        new_key = env.get(key) is None
        _apply(env, key, value, secret=secret, comment=comment, report=report)
        if new_key and env.get(key) is not None:
            comment = None


def run_detect(
    project_dir: Path,
    *,
    docker: DockerAPI | None = None,
    use_docker: bool = True,
    dry_run: bool = False,
    smtp_password: str | None = None,
    dns_secret: str | None = None,
) -> DetectReport:
    """Bring `.env` up to date. Raises only when `.env` cannot be read or written at all.

    `smtp_password` (from `scaffold new`/`update`, in memory) or the hand-off file plain copier renders
    replaces AUTHENTIK_EMAIL__PASSWORD: a password given now is newer than the one in `.env`. A dry run
    writes nothing at all, not even the lock.
    """
    layout = ProjectLayout(project_dir)
    for path in layout.scaffold_paths():
        refuse_symlink(path)
    if smtp_password is None and not dry_run:
        smtp_password = _take_handoff(layout.smtp_handoff, "the SMTP password", "smtp_password")
    if dns_secret is None and not dry_run:
        dns_secret = _take_handoff(layout.dns_secret_handoff, "the DNS provider's secret", "acme_dns_secret")
    answers = load_answers(project_dir)
    report = DetectReport(env_file=layout.env_file)

    owned_client = False
    if docker is None and use_docker:
        try:
            docker = connect(sdk=False)
            owned_client = True
        except DockerUnavailable as exc:
            report.docker_error = exc
    try:
        with nullcontext() if dry_run else exclusive_lock(layout.lock_file):
            given = {envkeys.SMTP_PASSWORD: smtp_password, _dns_secret_key(answers): dns_secret}
            _detect_locked(layout, answers, docker, report, dry_run=dry_run, given=given)
    finally:
        if owned_client and docker is not None:
            docker.close()
    return report


def run_detect_command(project_dir: Path, *, dry_run: bool = False) -> int:
    """`scaffold detect`: run the detection, print its report on stdout, return the exit code."""
    import sys

    from scaffold import output
    from scaffold.errors import EXIT_FAILED, EXIT_OK

    report = run_detect(project_dir, dry_run=dry_run)
    output.print_detect_report(report, stream=sys.stdout)
    if not report.changes and report.ok:
        output.status("ok", f"{report.env_file} is up to date", stream=sys.stdout)
    elif dry_run and report.changes:
        output.status("info", "dry run: nothing was written", stream=sys.stdout)
    return EXIT_OK if report.ok else EXIT_FAILED


def _detect_locked(
    layout: ProjectLayout,
    answers: Answers,
    docker: DockerAPI | None,
    report: DetectReport,
    *,
    dry_run: bool,
    given: dict[str | None, str | None],
) -> None:
    """`given`: secrets given now (in memory or through a hand-off file), by `.env` key."""
    env = EnvDocument.load(layout.env_file)
    given = {key: value for key, value in given.items() if key and value}
    report.created = not layout.env_file.exists()
    report.problems = env.problems()
    if _refuse_ambiguous(env, report):
        for key in given:
            report.errors.append(
                f"{key}: the {_SECRET_WORDS.get(key, 'secret')} given now was not saved; once .env is "
                "fixed, give it again with `scaffold update --data ...` (or edit .env)"
            )
        return
    if not dry_run:
        remove_stale_temp_files(layout.root, layout.env_file.name)
    before = env.render()
    state = ScaffoldState.load(layout.state_file)

    _apply_group(
        env, _plan_secrets(env, docker, answers, report), secret=True, comment=SECRET_COMMENT, report=report
    )

    for key, value in given.items():
        _apply(env, key, value, secret=True, comment=None, report=report)

    answer_values = _plan_answer_settings(env, answers, state, report)
    for key, value in answer_values.items():
        _apply(env, key, value, secret=False, comment=None, report=report)

    decision = decide_subnets(answers, env, docker)
    report.notes.extend(decision.notes)
    report.errors.extend(decision.errors)
    _apply_group(env, decision.values, secret=False, comment=NETWORK_COMMENT, report=report)
    _mark_verification(env, decision.verified, report)

    if dry_run:
        return
    if env.render() != before:
        if layout.env_file.exists():
            report.backup = backup_file(layout.env_file, layout.backups_dir, label="env")
        atomic_write_text(layout.env_file, env.render(), mode=0o600)
        report.written = True
    _record_state(layout, state, env, answers, verified=decision.verified)
    _sync_dns_credentials(layout, answers, env, report)


def _dns_secret_key(answers: Answers) -> str | None:
    """The `.env` key of the DNS provider's secret (None with the HTTP challenge)."""
    if not answers.dns_challenge:
        return None  # without loading the answer rules: the copier task stays cheap
    from scaffold.dnscreds import provider_of

    provider = provider_of(answers)
    return provider.env_key if provider else None


def _sync_dns_credentials(
    layout: ProjectLayout, answers: Answers, env: EnvDocument, report: DetectReport
) -> None:
    """certbot's credentials file follows `.env` and the answers (see scaffold/dnscreds.py)."""
    if not answers.dns_challenge and not os.path.lexists(layout.dns_credentials):
        return  # HTTP-01 and no file left from DNS-01: nothing to do (and no answer rules to load)
    from scaffold.dnscreds import sync_credentials

    key = _dns_secret_key(answers)
    if key is not None and not layout.state_dir.exists():
        layout.state_dir.mkdir(mode=0o700)
    result = sync_credentials(layout.root, answers, env.get(key) if key else None)
    shown = result.path.relative_to(layout.root)
    if result.problem and os.environ.get(DNS_SECRET_PENDING) == "1":
        report.notes.append(f"{shown}: written once the secret given to scaffold is in .env")
    elif result.problem:
        report.errors.append(result.problem)
    elif result.action == "written":
        report.notes.append(f"{shown}: written for certbot's {answers.acme_dns_provider} plugin (mode 0600)")
    elif result.action == "removed":
        report.notes.append(f"{shown}: removed (the HTTP challenge needs no DNS credentials)")


def _refuse_ambiguous(env: EnvDocument, report: DetectReport) -> bool:
    """True (with the lines to fix in `report.errors`) when python-dotenv and Compose may disagree on keys.

    scaffold sees `.env` through python-dotenv; the stack sees it through Docker Compose. Where they read
    different keys, a key missing for scaffold may be a secret Compose uses: generating it would append a
    new value that Compose then takes (the last one wins). So nothing is generated or written at all.
    """
    blocking = [problem for problem in report.problems if problem.blocking]
    if not blocking:
        return False
    report.problems = [problem for problem in report.problems if not problem.blocking]
    report.errors.append(_ambiguity_summary(blocking))
    report.errors.extend(f".env line {problem.line}: {problem.message}" for problem in blocking)
    return True


def apply_smtp_password(project_dir: Path, password: str) -> bool:
    """Put an SMTP password given to `scaffold new`/`update` into `.env`, replacing the one there; True if ok.

    The password reaches `.env` in memory: copier never sees it, so no file ever holds it but `.env`.
    Prints what happened (never the value).
    """
    answers = load_answers(project_dir)
    if not (answers.smtp_enabled and answers.smtp_username):
        output.status(
            "warn",
            "smtp_password was not used: it applies only with smtp_enabled=true and an smtp_username",
        )
        return False
    report = run_detect(project_dir, smtp_password=password)
    output.print_detect_report(report, stream=sys.stdout)
    return report.ok


def apply_dns_secret(project_dir: Path, secret: str) -> bool:
    """Put the DNS provider's secret given to `scaffold new`/`update` into `.env` and certbot's credentials
    file, in memory (copier never sees it); True if ok. Prints what happened (never the value).

    The answers must already say `acme_challenge=dns` (after copier ran)."""
    answers = load_answers(project_dir)
    if not answers.dns_challenge:
        output.status("warn", "acme_dns_secret was not used: it applies only with acme_challenge=dns")
        return False
    report = run_detect(project_dir, dns_secret=secret)
    output.print_detect_report(report, stream=sys.stdout)
    return report.ok


def store_secret(project_dir: Path, key: str, value: str) -> None:
    """Put one secret into `.env` as given (a backup first when it changes), before copier runs.

    `scaffold update` uses it for the DNS secret, so that the detection after copier finds it and writes
    certbot's credentials file; the update's own backup puts `.env` back if the update fails.
    """
    layout = ProjectLayout(project_dir)
    for path in layout.scaffold_paths():
        refuse_symlink(path)
    with exclusive_lock(layout.lock_file):
        env = EnvDocument.load(layout.env_file)
        require_unambiguous_env(project_dir)
        if env.get(key) == value:
            return
        env.set(key, value)
        if layout.env_file.exists():
            backup_file(layout.env_file, layout.backups_dir, label="env")
        atomic_write_text(layout.env_file, env.render(), mode=0o600)
    output.status("ok", f"{key}: set in .env (value not shown)")


def _ambiguity_summary(blocking: list[EnvProblem]) -> str:
    lines = ", ".join(str(n) for n in dict.fromkeys(problem.line for problem in blocking))
    return (
        f".env was not changed: python-dotenv (which scaffold reads) and Docker Compose (which runs the "
        f"stack) read it differently (line {lines}), so scaffold cannot tell which keys exist and will not "
        "generate or write anything"
    )


def require_unambiguous_env(project_dir: Path) -> None:
    """Raise when the `.env` merge at the end of an operation (`scaffold update`) would stop: stop first."""
    blocking = EnvDocument.load(ProjectLayout(project_dir).env_file).blocking_problems()
    if blocking:
        raise EnvFileError(
            _ambiguity_summary(blocking),
            hint="; ".join(f"line {problem.line}: {problem.message}" for problem in blocking)
            + "; then run again",
        )


def _record_state(
    layout: ProjectLayout, state: ScaffoldState, env: EnvDocument, answers: Answers, *, verified: bool
) -> None:
    """Remember which answer-derived values in .env are still scaffold's own."""
    before = (dict(state.written), state.subnet_unverified)
    for key, wanted in envkeys.answer_settings(answers).items():
        if env.get(key) == wanted:
            state.written[key] = wanted
    state.subnet_unverified = not verified
    if (state.written, state.subnet_unverified) != before or not layout.state_file.exists():
        state.save(layout.state_file)


def _take_handoff(path: Path, what: str, question: str) -> str | None:
    """A secret plain copier rendered into a hand-off file under `.scaffold/`, exactly; the file is deleted.

    copier writes it with the template's mode (0644) into a folder it may have created 0755, so the
    folder is made private and the file read and deleted before anything else: it never outlives this
    run, whatever happens next. A file that is not UTF-8 is deleted and reported, never guessed at.
    """
    try:
        if path.parent.is_dir():
            os.chmod(path.parent, 0o700)
    except OSError:
        pass  # another user's folder: reading and deleting the file below still happen at once
    if path.is_dir():
        raise EnvFileError(
            f"{path} is a folder; scaffold uses that name for copier's hand-off file of {what}",
            hint=f"move the folder out of the way (`mv {path} {path}.dir`) and run again",
        )
    try:
        data = read_bytes_no_follow(path)
    finally:
        path.unlink(missing_ok=True)
    if data is None:
        return None
    try:
        return data.decode("utf-8") or None
    except UnicodeDecodeError:
        raise EnvFileError(
            f"{path} was not valid UTF-8, so {what} in it was not used (the file is deleted)",
            hint=f"give it again with `scaffold update --data {question}=...`",
        ) from None


def _mark_verification(env: EnvDocument, verified: bool, report: DetectReport) -> None:
    """Flag a subnet chosen without Docker on its own line; drop the flag once Docker confirmed it.

    Only scaffold's own marker is ever replaced: a user's comment (such as `# pinned`) stays.
    """
    key = envkeys.PROXY_SUBNET
    if env.get(key) is None or env.is_pinned(key):
        return
    current = env.comment(key)
    wanted = None if verified else UNVERIFIED
    if current == wanted or current not in (None, UNVERIFIED):
        return
    try:
        env.set_comment(key, wanted)
    except EnvFileError as exc:
        report.errors.append(f"{key}: {exc.message}")
