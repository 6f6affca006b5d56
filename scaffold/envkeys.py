"""The keys scaffold keeps in `.env`, and where each value comes from.

Three kinds:
- secrets: generated once with `secrets`, never changed, never printed, never recorded;
- answer-derived settings (authentik tag, SMTP): follow the answers until the user edits them;
- the proxy network (subnet and trusted CIDRs): recomputed from Docker unless pinned.
"""

from __future__ import annotations

import secrets

from scaffold.answers import Answers

PG_PASS = "PG_PASS"
SECRET_KEY = "AUTHENTIK_SECRET_KEY"
SMTP_PASSWORD = "AUTHENTIK_EMAIL__PASSWORD"
TAG = "AUTHENTIK_TAG"
PROXY_SUBNET = "PROXY_SUBNET"
PROXY_SUBNET_V6 = "PROXY_SUBNET_V6"
TRUSTED_CIDRS = "AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"

#: The DNS provider's secret, one key per provider: answer_rules.DNS_PROVIDERS names the same keys
#: (a test checks); written out so that the copier task does not load the answer rules.
DNS_SECRETS = ("CERTBOT_RFC2136_SECRET", "CERTBOT_CLOUDFLARE_API_TOKEN")

SECRET_KEYS = (PG_PASS, SECRET_KEY, SMTP_PASSWORD, *DNS_SECRETS)
SUBNET_KEYS = (PROXY_SUBNET, PROXY_SUBNET_V6, TRUSTED_CIDRS)

# Shortest acceptable lengths; the install docs' `openssl rand -base64 36 / 60` give 48 / 80.
MIN_SECRET_LENGTH = {PG_PASS: 32, SECRET_KEY: 50}


def new_pg_password() -> str:
    """48 URL-safe characters: safe in a connection URL, under PostgreSQL's 99-character limit."""
    return secrets.token_urlsafe(36)


def new_secret_key() -> str:
    """80 URL-safe characters, as strong as authentik's documented `openssl rand -base64 60`."""
    return secrets.token_urlsafe(60)


GENERATORS = {PG_PASS: new_pg_password, SECRET_KEY: new_secret_key}


def answer_settings(answers: Answers) -> dict[str, str]:
    """The `.env` values that follow the answers, in the order they are added."""
    values = {TAG: answers.authentik_version}
    if answers.smtp_enabled:
        values.update(
            {
                "AUTHENTIK_EMAIL__HOST": answers.smtp_host,
                "AUTHENTIK_EMAIL__PORT": str(answers.smtp_port),
                "AUTHENTIK_EMAIL__USERNAME": answers.smtp_username,
                "AUTHENTIK_EMAIL__USE_TLS": "true" if answers.smtp_security == "starttls" else "false",
                "AUTHENTIK_EMAIL__USE_SSL": "true" if answers.smtp_security == "ssl" else "false",
                "AUTHENTIK_EMAIL__FROM": answers.smtp_from,
            }
        )
    return values
