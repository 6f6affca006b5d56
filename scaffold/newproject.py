"""`scaffold new`: generate a stack and make it ready for updates.

copier stores the template source exactly as given, and a relative path breaks every later
update, so the source is always made absolute (or kept as a URL). The new folder becomes a
git repository with a first commit (without .env, which is gitignored), because copier can
only update a clean git work tree.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scaffold import output
from scaffold.errors import ProjectError, SubnetError, TemplateError, UsageError
from scaffold.gitutil import commit_all, git, tracked_files
from scaffold.template_source import is_url, template_questions

THIS_CHECKOUT = Path(__file__).resolve().parents[1]
#: The words copier reads as a yes/no answer.
BOOL_WORDS = frozenset({"true", "false", "yes", "no", "y", "n", "t", "f", "on", "off", "1", "0"})


def resolve_template(template: str | None) -> str:
    """An absolute path or a URL, never a relative path."""
    if template is None:
        if (THIS_CHECKOUT / "copier.yml").is_file() and (THIS_CHECKOUT / ".git").exists():
            return str(THIS_CHECKOUT)
        raise TemplateError(
            "no template source: this scaffold is not running from a clone of the template",
            hint="pass --template with the template's git URL or the path of its clone",
        )
    if is_url(template):
        return template
    path = Path(template).expanduser().resolve()
    if not (path / "copier.yml").is_file():
        raise TemplateError(
            f"{path} is not a template (no copier.yml)", hint="pass the folder of the template clone"
        )
    return str(path)


def check_data_keys(data: dict[str, str], questions: dict[str, str] | None) -> None:
    """Refuse a --data key the template does not ask, or a value its type cannot take.

    copier's own message for a bad number names no question, and it reads any word as a true bool.
    """
    if questions is None:
        return
    for key, value in data.items():
        if key not in questions:
            close = difflib.get_close_matches(key, sorted(questions), n=1)
            raise UsageError(
                f"--data {key}=...: the template has no question '{key}'",
                hint=f"did you mean '{close[0]}'?" if close else f"questions: {', '.join(sorted(questions))}",
            )
        if questions[key] == "int" and not value.strip().lstrip("+-").isdigit():
            raise UsageError(
                f"invalid answer '{key}': '{value}' is not a whole number",
                hint=f"give {key} as a number, e.g. --data {key}=587",
            )
        if questions[key] == "bool" and value.strip().lower() not in BOOL_WORDS:
            raise UsageError(  # copier would take any other word as true
                f"invalid answer '{key}': '{value}' is not true or false",
                hint=f"give --data {key}=true or --data {key}=false",
            )


def check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ProjectError(
            f"{dest} already exists and is not an empty folder",
            hint="choose a new folder; to change an existing stack use `scaffold update` in it",
        )


@contextlib.contextmanager
def _dns_secret_pending(pending: bool) -> Iterator[None]:
    """Tell copier's hook that the DNS secret follows (a flag: the secret itself stays in memory here)."""
    from scaffold.detect import DNS_SECRET_PENDING

    if not pending:
        yield
        return
    os.environ[DNS_SECRET_PENDING] = "1"
    try:
        yield
    finally:
        os.environ.pop(DNS_SECRET_PENDING, None)


#: Answers of the rfc2136 plugin that have no usable default: `--defaults` would leave them empty.
_RFC2136_REQUIRED = ("acme_rfc2136_server", "acme_rfc2136_key_name")


def check_dns_answers(answers: dict[str, Any], secret: str | None, *, stored: bool = False) -> None:
    """Check what a non-interactive DNS challenge needs before anything is written: the secret (scaffold
    keeps it away from copier, which therefore cannot check it) and the rfc2136 settings that copier
    would fill with their empty defaults, unchecked. `stored`: `.env` already holds the secret."""
    from scaffold.answer_rules import RULES, AnswerProblem

    challenge = answers.get("acme_challenge", "http")
    provider = answers.get("acme_dns_provider", "rfc2136")
    if challenge != "dns":
        return
    checks: list[tuple[str, Any, dict[str, Any]]] = []
    if provider == "rfc2136":
        only_provider = {"acme_dns_provider": provider}
        checks += [(name, answers.get(name, ""), only_provider) for name in _RFC2136_REQUIRED]
    context = {"acme_challenge": challenge, "acme_dns_provider": provider, "stored": stored}
    checks.append(("acme_dns_secret", secret or "", context))
    for question, value, others in checks:
        try:
            RULES[question](value, **others)
        except AnswerProblem as problem:
            raise UsageError(f"invalid answer '{question}': {problem.message}", hint=problem.fix) from None


def check_explicit_subnet(data: dict[str, str]) -> None:
    """Refuse an explicit subnet that collides, before anything is written (when Docker answers).

    Its form and range are copier's validator's job; only Docker knows what it would overlap.
    """
    if "proxy_subnet" not in data:
        return  # the default, `auto`: the hook picks a free subnet
    from scaffold.subnets import describe, overlapping, parse_subnet

    try:
        subnet = parse_subnet(data.get("proxy_subnet", "auto"))
    except SubnetError:
        return
    from scaffold.dockerapi import connect, occupied_by_networks
    from scaffold.errors import DockerUnavailable
    from scaffold.hostroutes import host_routes

    try:
        docker = connect(sdk=False)
    except DockerUnavailable:
        return  # the hook checks again and explains
    try:
        occupied = occupied_by_networks(docker.networks())
        if docker.is_local:
            occupied += host_routes()
    finally:
        docker.close()
    clashes = overlapping(subnet, occupied)
    if clashes:
        raise UsageError(
            f"invalid answer 'proxy_subnet': {subnet} overlaps {describe(clashes)}",
            hint="choose a free private subnet, or leave proxy_subnet at 'auto'",
        )


def run_copier_copy(
    source: str, dest: Path, data: dict[str, str], *, defaults: bool, vcs_ref: str | None
) -> None:
    from scaffold.copierrun import run_copy

    run_copy(source, dest, data, defaults=defaults, vcs_ref=vcs_ref, overwrite=False)


#: `${NAME:?message}` in compose.yaml: Compose refuses to start without NAME.
_REQUIRED_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):\?")


def missing_stack_keys(project: Path) -> list[str]:
    """Keys compose.yaml cannot start without (its `${NAME:?...}` guards) that .env lacks or leaves empty."""
    from scaffold.envfile import EnvDocument

    compose = project / "compose.yaml"
    try:
        needed = dict.fromkeys(_REQUIRED_VARIABLE.findall(compose.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return []  # no compose.yaml to check against (the user's own layout)
    env = EnvDocument.load(project / ".env")
    return [key for key in needed if not env.get(key)]


def check_stack_env(project: Path) -> None:
    """Refuse to call a project ready when `docker compose up` would stop at a missing key."""
    missing = missing_stack_keys(project)
    if missing:
        raise ProjectError(
            f"{project / '.env'} lacks {', '.join(missing)}, which compose.yaml needs: "
            "`docker compose up` would stop there (the files are kept)",
            hint=f"correct what the hook's messages above name, then run `scaffold detect` in {project}",
        )


def create_project(
    dest: Path,
    *,
    data: dict[str, str],
    defaults: bool = False,
    template: str | None = None,
    vcs_ref: str | None = None,
) -> Path:
    dest = dest.expanduser().resolve()
    source = resolve_template(template)
    check_data_keys(data, template_questions(source))
    check_destination(dest)
    check_explicit_subnet(data)
    # Secrets go to .env in memory: through copier they would sit in a file copier writes 0644.
    smtp_password = data.get("smtp_password") or None
    dns_secret = data.get("acme_dns_secret") or None
    if defaults:  # else copier asks, the secret without echo
        check_dns_answers(data, dns_secret)
    data = {key: value for key, value in data.items() if key not in ("smtp_password", "acme_dns_secret")}

    from scaffold.inprocess import offer_task

    with _dns_secret_pending(dns_secret is not None), offer_task() as task:
        run_copier_copy(source, dest, data, defaults=defaults, vcs_ref=vcs_ref)
        if task.claimed:  # the template's task is this process's own code: run it here, not in a new Python
            from scaffold.hook import main as run_hook

            run_hook(dest)
    if smtp_password is not None:
        from scaffold.detect import apply_smtp_password

        apply_smtp_password(dest, smtp_password)
    if dns_secret is not None:
        from scaffold.detect import apply_dns_secret

        apply_dns_secret(dest, dns_secret)

    git(dest, "init", "-q")
    commit_all(dest, "Generate authentik stack with authentik-scaffold")
    leaked = [name for name in tracked_files(dest) if name == ".env" or name.startswith(".scaffold/")]
    if leaked:  # .gitignore should make this impossible; never leave a secret committed
        raise ProjectError(
            f"secret files were committed: {', '.join(leaked)}", hint="check the .gitignore of the template"
        )
    check_stack_env(dest)

    output.status("ok", f"generated {dest} (git repository with a first commit; .env is not committed)")
    output.say("next:")
    output.say(f"  cd {dest}")
    output.say("  docker compose up -d")
    output.say("  scaffold doctor        # checks DNS, ports, certificates and proxy trust")
    return dest
