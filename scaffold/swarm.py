"""`scaffold deploy`: put a `target: swarm` project on Docker Swarm.

`docker stack deploy` reads no `.env` (moby#29133) and has no place for a secret but a Swarm secret. So:
bring `.env` up to date (`scaffold detect`: secrets, the pinned overlay subnet, trusted CIDRs), turn each
secret in it into a Swarm secret whose name carries a keyed digest of the value (Swarm secrets cannot
change; a new value is a new secret, and the services move to it), then run `docker stack deploy` with
`.env`'s other values in its environment, as Compose would substitute them. Secret values travel only on
`docker secret create`'s standard input: never on a command line, in the stack file or in a service spec.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scaffold import envkeys, output
from scaffold.answers import Answers, load_answers
from scaffold.dockerapi import STACK_NAMESPACE_LABEL
from scaffold.envfile import EnvDocument
from scaffold.errors import EXIT_FAILED, EXIT_OK, DockerUnavailable, ProjectError
from scaffold.layout import ProjectLayout

#: Not a `.env` key: the DNS-01 credentials file scaffold writes from `.env` (.scaffold/dns/credentials.ini),
#: which certbot reads whole, as a secret of its own.
DNS_CREDENTIALS = "DNS_CREDENTIALS"
#: `.env` key -> the secret's name in the stack file (`/run/secrets/<name>` in the containers).
SECRET_FILES = {
    envkeys.PG_PASS: "pg_pass",
    envkeys.SECRET_KEY: "authentik_secret_key",
    envkeys.SMTP_PASSWORD: "smtp_password",
    DNS_CREDENTIALS: "dns_credentials",
}
#: Labels on the secrets scaffold creates, so it finds (and prunes) its own and nobody else's.
PROJECT_LABEL = "org.scaffold.project"
KEY_LABEL = "org.scaffold.key"
#: The environment variable that tells the stack file a secret's current name.
NAME_VARIABLE = "SCAFFOLD_SECRET_{key}"
RESOLVE_CHOICES = ("always", "changed", "never")


@dataclass(frozen=True)
class SwarmSecret:
    key: str
    name: str
    value: str


def secret_name(project: str, key: str, value: str, salt: str) -> str:
    """`<project>_<secret>_<12 hex>`: a new value gives a new name, the name tells nothing about it.

    The digest is keyed with authentik's secret key, so even a weak SMTP password cannot be guessed
    from the name by trying candidates. Swarm allows 64 characters.
    """
    digest = hmac.new(salt.encode(), f"{key}\0{value}".encode(), hashlib.sha256).hexdigest()[:12]
    return f"{project[:32]}_{SECRET_FILES[key]}_{digest}"


def wanted_secrets(answers: Answers, env: EnvDocument, project_dir: Path) -> list[SwarmSecret]:
    """The secrets the stack file names, from `.env` (and with DNS-01 the credentials file scaffold
    writes from it); ProjectError naming any that is missing."""
    keys = [envkeys.PG_PASS, envkeys.SECRET_KEY]
    if answers.smtp_enabled and answers.smtp_username:
        keys.append(envkeys.SMTP_PASSWORD)
    missing = [key for key in keys if not env.get(key)]
    if missing:
        raise ProjectError(
            f".env lacks {', '.join(missing)}, which the stack reads as Swarm secrets",
            hint="run `scaffold detect` (it generates missing secrets), or set the SMTP password with "
            "`scaffold update --data smtp_password=...`",
        )
    salt = env.get(envkeys.SECRET_KEY) or ""
    values = {key: env.get(key) or "" for key in keys}
    if answers.dns_challenge:
        values[DNS_CREDENTIALS] = _dns_credentials(project_dir)
    return [
        SwarmSecret(key, secret_name(answers.project_name, key, value, salt), value)
        for key, value in values.items()
    ]


def _dns_credentials(project_dir: Path) -> str:
    """The credentials file certbot's DNS plugin reads, as `scaffold detect` wrote it from `.env`."""
    path = ProjectLayout(project_dir).dns_credentials
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError(
            f"the DNS-01 credentials file {path} cannot be read ({exc.strerror}), and certbot reads it as a "
            "Swarm secret",
            hint="run `scaffold detect` in the project folder (it writes the file from the secret in .env)",
        ) from exc


def _docker(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["docker", *args], input=stdin, capture_output=True, text=True, env=env, check=False, timeout=600
        )
    except FileNotFoundError:
        raise DockerUnavailable(
            "the docker command is not installed", hint="install Docker Engine (its CLI deploys the stack)"
        ) from None


def require_manager() -> None:
    """Stop unless the daemon is a Swarm manager: only a manager takes secrets and stacks."""
    result = _docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    if result.returncode != 0:
        raise DockerUnavailable(
            f"cannot reach the Docker daemon: {result.stderr.strip()}",
            hint="start Docker, or point DOCKER_HOST / `docker context use` at a Swarm manager",
        )
    state, _, manager = result.stdout.strip().partition(" ")
    if state != "active":
        raise DockerUnavailable(
            f"this Docker daemon is not part of a swarm (state: {state or 'unknown'})",
            hint="create one with `docker swarm init` (or join one), or run scaffold against a manager",
        )
    if manager != "true":
        raise DockerUnavailable(
            "this Docker daemon is a swarm worker; secrets and stacks are managed on a manager",
            hint="run `scaffold deploy` on a manager node (`docker node ls` lists them)",
        )


def existing_secrets(project: str) -> dict[str, str]:
    """Name -> `.env` key of the Swarm secrets scaffold made for `project`."""
    result = _docker(
        "secret", "ls", "--filter", f"label={PROJECT_LABEL}={project}",
        "--format", '{{.Name}}\t{{.Labels}}',
    )  # fmt: skip
    if result.returncode != 0:
        raise DockerUnavailable(f"cannot list Swarm secrets: {result.stderr.strip()}", hint="check the swarm")
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, _, labels = line.partition("\t")
        key = dict(item.partition("=")[::2] for item in labels.split(",") if item).get(KEY_LABEL, "")
        found[name] = key
    return found


def create_secrets(project: str, secrets: list[SwarmSecret]) -> list[str]:
    """Create the secrets that do not exist yet (value on stdin only); returns their names."""
    have = existing_secrets(project)
    created = []
    for secret in secrets:
        if secret.name in have:
            continue
        result = _docker(
            "secret", "create", "--label", f"{PROJECT_LABEL}={project}",
            "--label", f"{KEY_LABEL}={secret.key}", secret.name, "-", stdin=secret.value,
        )  # fmt: skip
        if result.returncode != 0:
            raise DockerUnavailable(
                f"could not create the Swarm secret {secret.name} ({secret.key}): {result.stderr.strip()}",
                hint="check that this node is a manager and the swarm is healthy (`docker node ls`)",
            )
        created.append(secret.name)
    return created


def secrets_in_use(project: str) -> set[str]:
    """Secret names the stack's services use now or would roll back to (Spec and PreviousSpec)."""
    label = f"label={STACK_NAMESPACE_LABEL}={project}"
    ids = _docker("service", "ls", "-q", "--filter", label).stdout.split()
    result = _docker("service", "inspect", *ids) if ids else None
    if result is None or result.returncode != 0:
        return set()
    names = set()
    for service in json.loads(result.stdout):
        for spec in (service.get("Spec"), service.get("PreviousSpec")):
            container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
            names.update(str(item.get("SecretName", "")) for item in container.get("Secrets") or [])
    return names


def prune_secrets(project: str, keep: list[SwarmSecret]) -> list[str]:
    """Remove scaffold's older secrets of `project` that no service uses any more (best effort).

    A secret the previous service spec names stays: a failed update rolls back to it.
    """
    names = {secret.name for secret in keep} | secrets_in_use(project)
    removed = []
    for name in existing_secrets(project):
        if name not in names and _docker("secret", "rm", name).returncode == 0:
            removed.append(name)
    return removed


def stack_environment(env: EnvDocument, secrets: list[SwarmSecret]) -> dict[str, str]:
    """What `docker stack deploy` substitutes: `.env` as Compose reads it, minus every secret value.

    The secrets' values are left out, so no `${PG_PASS}` can put one into a service spec; their current
    Swarm names are added instead.
    """
    withheld = {*SECRET_FILES, *envkeys.SECRET_KEYS}  # the DNS provider's secret included
    values = dict(os.environ)
    for key in env.keys():  # noqa: SIM118 - an EnvDocument, not a dict
        value = env.get(key)
        if key not in withheld and value is not None:
            values[key] = value
    for key in withheld:
        values.pop(key, None)
    for secret in secrets:
        values[NAME_VARIABLE.format(key=secret.key)] = secret.name
    return values


def run_deploy(
    project_dir: Path, *, extra_files: list[Path] | None = None, resolve_image: str = "always"
) -> int:
    """`scaffold deploy`: detect, secrets, `docker stack deploy`; returns the exit code."""
    from scaffold.detect import run_detect

    answers = load_answers(project_dir)
    if answers.target != "swarm":
        raise ProjectError(
            "this project's target is compose (one machine): start it with `docker compose up -d`",
            hint="to run it on Docker Swarm, switch first: `scaffold update --data target=swarm`",
        )
    require_manager()
    report = run_detect(project_dir)
    output.print_detect_report(report, stream=sys.stdout)
    if not report.ok:
        return EXIT_FAILED
    env = EnvDocument.load(ProjectLayout(project_dir).env_file)
    secrets = wanted_secrets(answers, env, project_dir)
    for name in create_secrets(answers.project_name, secrets):
        output.status("ok", f"Swarm secret {name} created (value not shown)", stream=sys.stdout)
    files = ["-c", "compose.yaml"]
    for extra in extra_files or []:
        files += ["-c", str(extra)]
    result = subprocess.run(
        ["docker", "stack", "deploy", "--prune", "--detach=true", f"--resolve-image={resolve_image}",
         *files, answers.project_name],
        cwd=project_dir, env=stack_environment(env, secrets), check=False,
    )  # fmt: skip
    if result.returncode != 0:
        output.error(
            f"`docker stack deploy` failed (exit code {result.returncode})",
            "read its message above; `docker stack ps --no-trunc "
            + answers.project_name
            + "` shows the tasks",
        )
        return EXIT_FAILED
    removed = prune_secrets(answers.project_name, secrets)
    if removed:
        output.status("ok", f"removed unused Swarm secrets: {', '.join(removed)}", stream=sys.stdout)
    output.status(
        "ok",
        f"stack {answers.project_name} deployed; `scaffold doctor` checks that it converged",
        stream=sys.stdout,
    )
    return EXIT_OK
