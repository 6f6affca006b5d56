"""The credentials file certbot's DNS plugin reads, derived from the answers and the secret in `.env`.

`.env` is the only place the provider's secret is kept; this file is a copy in the format certbot's
plugin wants (an INI file of `dns_<plugin>_<setting> = value` lines), rewritten whenever what it should
hold changes, so that editing the secret in `.env` and running `scaffold detect` is all a rotation
takes. It lives in `.scaffold/dns/` (private, gitignored, left out of archives: `.env` has the secret)
and is mounted read-only into the certbot container alone; nginx never sees it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scaffold.answer_rules import DNS_PROVIDERS, DnsProvider
from scaffold.answers import Answers
from scaffold.fsutil import atomic_write_text, read_bytes_no_follow, refuse_symlink

#: Where the file is in the project, and where compose.yaml mounts its folder in the certbot container.
CREDENTIALS_DIR = Path(".scaffold") / "dns"
CREDENTIALS_NAME = "credentials.ini"
CONTAINER_PATH = "/run/scaffold-dns/credentials.ini"


def provider_of(answers: Answers) -> DnsProvider | None:
    """The DNS plugin in use; None with the HTTP challenge (or a provider this version does not know)."""
    return DNS_PROVIDERS.get(answers.acme_dns_provider) if answers.dns_challenge else None


def credentials_text(answers: Answers, secret: str) -> str:
    """The file's content: the plugin's settings from the answers, and the secret."""
    provider = DNS_PROVIDERS[answers.acme_dns_provider]
    lines = [
        "# Written by scaffold from .copier-answers.yml and .env; edit those, then run `scaffold detect`.",
    ]
    if answers.acme_dns_provider == "rfc2136":
        lines += [
            f"dns_rfc2136_server = {answers.acme_rfc2136_server}",
            f"dns_rfc2136_port = {answers.acme_rfc2136_port}",
            f"dns_rfc2136_name = {answers.acme_rfc2136_key_name}",
            f"dns_rfc2136_algorithm = {answers.acme_rfc2136_algorithm.upper()}",
        ]
    lines.append(f"{provider.secret_setting} = {secret}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CredentialsResult:
    """What `sync_credentials` did: 'written', 'unchanged', 'removed', 'none', or a problem to report."""

    action: str
    path: Path
    problem: str | None = None


def sync_credentials(root: Path, answers: Answers, secret: str | None) -> CredentialsResult:
    """Make the credentials file say what the answers and `.env` say (mode 0600 in a 0700 folder).

    Without the secret in `.env` the file is not written, and the problem names the key to set. With the
    HTTP challenge an old file is removed: a secret no service needs is one copy too many.
    """
    folder = root / CREDENTIALS_DIR
    path = folder / CREDENTIALS_NAME
    refuse_symlink(folder)
    refuse_symlink(path)
    provider = provider_of(answers)
    if provider is None:
        if path.exists():
            path.unlink()
            return CredentialsResult("removed", path)
        return CredentialsResult("none", path)
    if not secret:
        return CredentialsResult(
            "missing",
            path,
            f"{provider.env_key} is not in .env, so certbot has no {provider.secret_word} for "
            f"{answers.acme_dns_provider}. fix: add `{provider.env_key}=...` to .env (or run "
            "`scaffold update --data acme_dns_secret=...`), then `scaffold detect`",
        )
    wanted = credentials_text(answers, secret).encode()
    current = read_bytes_no_follow(path)
    if current == wanted and (os.stat(path).st_mode & 0o777) == 0o600:
        return CredentialsResult("unchanged", path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    atomic_write_text(path, wanted.decode(), mode=0o600)
    return CredentialsResult("written", path)
