"""doctor's file checks: `.env` (present, private, complete, strong, well-formed), secrets kept out of
git and the answers file, and `compose.yaml` accepted by Compose.

These need neither the network nor a running stack, so they run first and always.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from scaffold import envkeys
from scaffold.doctor.core import (
    MIN_SEARCHABLE_SECRET,
    Check,
    Context,
    Outcome,
    Status,
    fail,
    ok,
    skip,
    warn,
)

#: Tracked files larger than this are not searched for secrets (images, dumps).
MAX_SEARCHED_BYTES = 5 * 1024 * 1024
COMPOSE_TIMEOUT = 20
DETECT = "`scaffold detect`"


def required_keys(ctx: Context) -> list[str]:
    keys = [
        envkeys.PG_PASS,
        envkeys.SECRET_KEY,
        envkeys.TAG,
        envkeys.PROXY_SUBNET,
        envkeys.TRUSTED_CIDRS,
    ]
    if ctx.answers.enable_ipv6:
        keys.insert(4, envkeys.PROXY_SUBNET_V6)
    return keys


def _no_env(ctx: Context) -> Outcome | None:
    if ctx.env is None:
        return skip(f"not checked: {ctx.env_error} (see files.env-present)")
    return None


def check_env_present(ctx: Context) -> Outcome:
    path = ctx.layout.env_file
    if ctx.env is None:
        if not path.exists():
            return fail(
                ".env does not exist: Compose cannot start the stack without its secrets and subnets",
                f"run {DETECT} in this folder: it creates .env (mode 0600) with new secrets. If the stack "
                "ran before, restore .env from your backup or .scaffold/backups/ instead: the database "
                "needs its old PG_PASS",
            )
        if path.is_symlink():
            return fail(
                f".env is a symbolic link (to {os.readlink(path)}): scaffold refuses to read or write "
                "secrets through a link (they could land, or a file be truncated, wherever it points)",
                'replace the link with the file itself: `cp --remove-destination "$(readlink -f .env)" .env`',
            )
        return fail(
            f".env cannot be read: {ctx.env_error}", "fix the file as the message says, then run again"
        )
    return ok(".env exists")


def check_env_mode(ctx: Context) -> Outcome:
    if (blocked := _no_env(ctx)) is not None:
        return blocked
    info = ctx.layout.env_file.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        who = "everyone on this host" if mode & 0o004 else "the file's group"
        return fail(
            f".env has mode {mode:04o}: {who} can read authentik's secret key and the database password",
            "chmod 600 .env",
        )
    return ok(f".env has mode {mode:04o} (only its owner can read it)")


def check_env_keys(ctx: Context) -> Outcome:
    if (blocked := _no_env(ctx)) is not None:
        return blocked
    missing = [key for key in required_keys(ctx) if ctx.env_value(key) is None]
    if not missing:
        return ok(f"every required key is set ({', '.join(required_keys(ctx))})")
    fix = (
        f"run {DETECT}: it adds the missing keys (secrets are generated, subnets read from Docker), "
        "then `docker compose up -d`"
    )
    if envkeys.PG_PASS in missing and _database_exists(ctx):
        fix = (
            "restore PG_PASS from your backup or .scaffold/backups/*/.env (the database volume exists: a "
            f"new password would lock authentik out), then run {DETECT} for the other keys"
        )
    return fail(f".env lacks {', '.join(missing)} (missing or empty)", fix)


def _database_exists(ctx: Context) -> bool:
    if ctx.docker is None:
        return False
    try:
        return ctx.docker.project_volume_exists(ctx.project, "database")
    except Exception:
        return False


def check_env_secrets(ctx: Context) -> Outcome:
    if (blocked := _no_env(ctx)) is not None:
        return blocked
    problems: list[str] = []
    fixes: list[str] = []
    checked = []
    for key, minimum in envkeys.MIN_SECRET_LENGTH.items():
        value = ctx.env_value(key)
        if value is None:
            continue
        checked.append(key)
        if len(value) < minimum:
            problems.append(f"{key} has {len(value)} characters (at least {minimum} expected)")
            fixes.append(_rotation_fix(key))
    pg = ctx.env_value(envkeys.PG_PASS)
    if pg is not None and len(pg) > 99:
        problems.append(f"PG_PASS has {len(pg)} characters; PostgreSQL accepts at most 99")
        fixes.append(_rotation_fix(envkeys.PG_PASS))
    if problems:
        return fail("; ".join(problems) + " (values not shown)", "; ".join(dict.fromkeys(fixes)))
    if not checked:
        return skip("no secret to check yet (see files.env-keys)")
    return ok(f"{' and '.join(checked)} are long enough (values not shown)")


def _rotation_fix(key: str) -> str:
    if key == envkeys.SECRET_KEY:
        return (
            f"delete the {key} line from .env and run {DETECT} to generate a strong one, then "
            "`docker compose up -d` (every user is logged out once)"
        )
    return (
        "change the database password first (`docker compose exec postgresql psql -U authentik authentik`, "
        "then `\\password authentik`), put the same new value (32 to 99 characters, e.g. from "
        "`openssl rand -base64 36`) into PG_PASS in .env, then `docker compose up -d`"
    )


def check_env_syntax(ctx: Context) -> Outcome:
    if (blocked := _no_env(ctx)) is not None:
        return blocked
    assert ctx.env is not None
    problems = ctx.env.problems()
    if not problems:
        return ok(".env has no malformed or ambiguous lines")
    listed = "; ".join(str(problem) for problem in problems)
    if any(problem.blocking for problem in problems):
        return fail(
            f"python-dotenv (scaffold) and Docker Compose (the stack) read different keys from .env, or "
            f"Compose refuses it, so scaffold will not write it: {listed}",
            "edit .env as each message says (each names its line), then run `scaffold detect`",
        )
    return warn(
        f"{len(problems)} line(s) of .env that Docker Compose or scaffold may read differently: {listed}",
        "edit .env as each message says (each names its line)",
    )


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """git's answer, or None when git is missing or does not answer in time."""
    from scaffold.errors import GitError
    from scaffold.gitutil import git

    try:
        return git(root, *args, check=False, timeout=10)
    except GitError:
        return None


def _secret_names(ctx: Context) -> dict[str, str]:
    """Secret value -> the .env key holding it, for values long enough to search for."""
    names: dict[str, str] = {}
    for key in envkeys.SECRET_KEYS:
        value = ctx.env_value(key)
        if value is not None and len(value) >= MIN_SEARCHABLE_SECRET:
            names.setdefault(value, key)
    return names


def _files_containing(paths: list[Path], root: Path, secrets: dict[str, str]) -> dict[str, list[str]]:
    """key -> files (relative to root) that contain its value."""
    found: dict[str, list[str]] = {}
    needles = {value.encode(): key for value, key in secrets.items()}
    for path in paths:
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_SEARCHED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        for needle, key in needles.items():
            if needle in data:
                found.setdefault(key, []).append(str(path.relative_to(root)))
    return found


def check_secrets_untracked(ctx: Context) -> Outcome:
    if (blocked := _no_env(ctx)) is not None:
        return blocked
    listing = _git(ctx.root, "ls-files", "-z", "--cached", "--", ".")
    if listing is None:
        return skip("not checked: git is not installed or did not answer")
    if listing.returncode != 0 and "dubious ownership" in listing.stderr:
        return skip(
            "not checked: git refuses this repository because another user owns it",
            f"run doctor as the folder's owner, or `git config --global --add safe.directory {ctx.root}`",
        )
    if listing.returncode != 0:
        return skip(
            "not checked: this folder is not in a git repository (`scaffold new` makes one; `copier copy` "
            "alone does not)",
            None,
        )
    names = [name for name in listing.stdout.split("\0") if name]
    secrets = _secret_names(ctx)
    found = _files_containing([ctx.root / name for name in names], ctx.root, secrets)
    history = _history_outcome(ctx, secrets) if not found else None
    if history is not None:
        return history
    if found:
        where = "; ".join(f"{key} in {', '.join(files)}" for key, files in found.items())
        env_tracked = ".env" in names
        fix = (
            "remove the secret from those files (reference ${NAME} from .env instead)"
            if not env_tracked
            else "stop tracking .env: `git rm --cached .env && git commit -m 'Untrack .env'`"
        )
        return fail(
            f"secret values from .env are in git-tracked files: {where} (values not shown)",
            f"{fix}; if that commit ever left this host (a push, a backup), rotate the secrets too "
            "(see files.env-secrets for how)",
        )
    ignored = _git(ctx.root, "check-ignore", "-q", ".env")
    if ignored is not None and ignored.returncode == 1:
        return warn(
            f"no secret in the {len(names)} tracked files, but .env is not gitignored: `git add -A` would "
            "commit it",
            "add a line `.env` to .gitignore",
        )
    return ok(
        f"no secret value of .env in the {len(names)} git-tracked files or anywhere in git history; "
        ".env is gitignored"
    )


def _history_outcome(ctx: Context, secrets: dict[str, str]) -> Outcome | None:
    """A fail when a secret is in any commit (reverted ones too), a warn when history was not all read."""
    from scaffold.githistory import BYTE_BUDGET, TIME_BUDGET, GitUnavailable, scan_history

    try:
        scan = scan_history(ctx.root, {value.encode(): key for value, key in secrets.items()})
    except GitUnavailable as exc:
        return warn(f"git history not checked for secrets: {exc}", None)
    if scan.findings:
        where = "; ".join(
            f"{f.key} in {f.path or 'a file'}" + (f" (commit {f.commit})" if f.commit else "")
            for f in scan.findings
        )
        return fail(
            f"secret values from .env are in git history, though no tracked file holds them now: {where} "
            "(values not shown); every clone and push carries them",
            "rotate those secrets (see files.env-secrets for how), and if the history never left this host, "
            "remove them from it: `git filter-repo --replace-text <file listing the values>` (or the BFG), "
            "then `git reflog expire --expire=now --all && git gc --prune=now`",
        )
    if not scan.complete:
        return warn(
            f"no secret in the {scan.blobs} file versions read, but git history is larger than doctor reads "
            f"({BYTE_BUDGET // 2**20} MB, {TIME_BUDGET:g} s), so older commits were not checked",
            "search the rest yourself, e.g. `git log -p --all | grep -c -F -f <file listing the values>`",
        )
    return None


def check_answers_no_secrets(ctx: Context) -> Outcome:
    path = ctx.layout.answers_file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return skip(f"not checked: cannot read {path.name} ({exc.strerror})")
    found = _files_containing([path], ctx.root, _secret_names(ctx)) if ctx.env is not None else {}
    keys = sorted(found)
    for question in ("smtp_password", "acme_dns_secret"):  # the secret questions, hand-edited in
        if re.search(rf"(?m)^\s*{question}\s*:\s*\S", text):
            keys.append(question)
    if keys:
        return fail(
            f"{path.name} holds secrets ({', '.join(keys)}; values not shown): it is committed and shared "
            "with every copy of the project",
            f"delete those lines from {path.name} (secrets belong in .env only), commit, and rotate the "
            "secrets if the file left this host",
        )
    return ok(f"{path.name} holds no secret")


def check_compose_config(ctx: Context) -> Outcome:
    if (blocked := _no_env(ctx)) is not None:
        return blocked
    if ctx.status_of("files.env-keys") == Status.FAIL:
        return skip("not checked until .env has every required key (see files.env-keys)")
    if not (ctx.root / "compose.yaml").is_file():
        return fail(
            "compose.yaml is missing",
            "restore it from git (`git checkout -- compose.yaml`) or from .scaffold/backups/",
        )
    from scaffold.compose import check_config

    result = check_config(ctx.root, timeout=COMPOSE_TIMEOUT)
    if result.state == "no-docker":
        return skip(
            "not checked: the docker command is not installed", "install Docker Engine and Compose v2"
        )
    if result.state == "timeout":
        return warn(result.message, None)
    if result.state == "no-compose":
        return skip(
            "not checked: Docker Compose v2 (`docker compose`) is not installed",
            "install the docker-compose-plugin package (or Docker Desktop)",
        )
    if result.state == "rejected":
        return fail(
            f"`docker compose config` rejects the project: {result.message.splitlines()[-1]}",
            "fix the file and line it names (`git diff` shows your edits to compose.yaml), then run "
            "`docker compose config --quiet` until it prints nothing",
        )
    return ok("`docker compose config` accepts compose.yaml and .env")


CHECKS = (
    Check("files.env-present", check_env_present),
    Check("files.env-mode", check_env_mode),
    Check("files.env-keys", check_env_keys),
    Check("files.env-secrets", check_env_secrets),
    Check("files.env-syntax", check_env_syntax),
    Check("files.secrets-untracked", check_secrets_untracked),
    Check("files.answers-no-secrets", check_answers_no_secrets),
    Check("files.compose-config", check_compose_config),
)
