"""The generated project's copier answers file, read into a typed record.

copier writes it (`.copier-answers.yml`); scaffold only reads it. Secret answers (the SMTP
password) are never in it.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from scaffold.errors import ProjectError

ANSWERS_FILE = ".copier-answers.yml"


@dataclass(frozen=True)
class Answers:
    """Every question of copier.yml, typed, with copier.yml's defaults (a test keeps the two in step).

    The SMTP password and the DNS provider's secret are secret answers: never in the answers file,
    so never here.
    """

    project_name: str
    domain: str
    authentik_version: str
    acme_email: str = ""
    acme_accept_no_email: bool = False
    acme_server: str = "letsencrypt"
    acme_challenge: str = "http"
    acme_dns_provider: str = "rfc2136"
    acme_wildcard: bool = False
    acme_dns_propagation_seconds: int = 60
    acme_rfc2136_server: str = ""
    acme_rfc2136_port: int = 53
    acme_rfc2136_key_name: str = ""
    acme_rfc2136_algorithm: str = "HMAC-SHA512"
    web_path: str = "/"
    upstream_scheme: str = "https"
    proxy_subnet: str = "auto"
    enable_ipv6: bool = False
    proxy_subnet_v6: str = "auto"
    upstream_proxies: str = ""
    http_port: int = 80
    https_port: int = 443
    #: Where users reach authentik; projects from before the question get its default.
    public_url: str = ""
    smtp_enabled: bool = False
    smtp_host: str = ""
    smtp_security: str = "starttls"
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_from: str = ""
    outpost_docker_socket: bool = False
    backup_schedule: str = "off"
    backup_keep: int = 14
    #: Apps behind forward auth: name -> settings (answer_rules.parse_apps reads them).
    apps: dict = field(default_factory=dict)
    #: compose (one machine) or swarm (`scaffold deploy` to a Docker Swarm).
    target: str = "compose"
    src_path: str | None = None
    commit: str | None = None
    raw: dict[str, Any] | None = None

    @property
    def dns_challenge(self) -> bool:
        return self.acme_challenge == "dns"

    @property
    def certificate_names(self) -> tuple[str, ...]:
        """The names the main certificate must carry: the domain, and `*.domain` with acme_wildcard."""
        wildcard = self.dns_challenge and self.acme_wildcard
        return (self.domain, f"*.{self.domain}") if wildcard else (self.domain,)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Answers:
        missing = [key for key in ("project_name", "domain", "authentik_version") if not data.get(key)]
        if missing:
            raise ProjectError(f"the answers file lacks {', '.join(missing)}", hint=_RESTORE_HINT)
        _check_types(data)
        # An answer that is missing (a question newer than the project) or empty where the question's
        # default is not gets that default.
        values = {
            item.name: data.get(item.name) or _default(item)
            for item in fields(cls)
            if item.name in ANSWER_TYPES and item.name not in ("project_name", "domain", "authentik_version")
        }
        # 0 is a real answer for these (no HTTP port published; no propagation wait).
        for key in ("http_port", "acme_dns_propagation_seconds"):
            if data.get(key) == 0:
                values[key] = 0
        values["public_url"] = data.get("public_url") or default_public_url(
            data["domain"], data.get("https_port")
        )
        return cls(
            project_name=data["project_name"],
            domain=data["domain"],
            authentik_version=data["authentik_version"],
            **values,
            src_path=data.get("_src_path"),
            commit=None if data.get("_commit") is None else str(data["_commit"]),
            raw=dict(data),
        )


def _default(item: Field) -> Any:
    return item.default_factory() if item.default is MISSING else item.default  # type: ignore[misc]


_RESTORE_HINT = "restore it from git (`git checkout -- .copier-answers.yml`) or from .scaffold/backups/"
#: The type each answer scaffold reads must have in the file (copier writes them so; a hand edit may not).
#: `_commit` may be a number: YAML reads an all-digit abbreviated hash as one.
ANSWER_TYPES: dict[str, type | tuple[type, ...]] = {
    "project_name": str,
    "domain": str,
    "authentik_version": str,
    "acme_email": str,
    "acme_accept_no_email": bool,
    "acme_server": str,
    "acme_challenge": str,
    "acme_dns_provider": str,
    "acme_wildcard": bool,
    "acme_dns_propagation_seconds": int,
    "acme_rfc2136_server": str,
    "acme_rfc2136_port": int,
    "acme_rfc2136_key_name": str,
    "acme_rfc2136_algorithm": str,
    "web_path": str,
    "upstream_scheme": str,
    "proxy_subnet": str,
    "enable_ipv6": bool,
    "proxy_subnet_v6": str,
    "upstream_proxies": str,
    "http_port": int,
    "https_port": int,
    "public_url": str,
    "smtp_enabled": bool,
    "smtp_host": str,
    "smtp_security": str,
    "smtp_port": int,
    "smtp_username": str,
    "smtp_from": str,
    "outpost_docker_socket": bool,
    "backup_schedule": str,
    "backup_keep": int,
    "apps": dict,
    "target": str,
    "_src_path": str,
    "_commit": (str, int),
}
_TYPE_WORDS = {str: "text", bool: "true or false", int: "a whole number", dict: "a mapping"}


def _check_types(data: dict[str, Any]) -> None:
    """Refuse a value of the wrong type (`smtp_port: abc`, `enable_ipv6: maybe`), naming key and value."""
    for key, expected in ANSWER_TYPES.items():
        value = data.get(key)
        if value is None:
            continue
        allowed = expected if isinstance(expected, tuple) else (expected,)
        # bool is an int in Python; a port of `true` is still wrong.
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ProjectError(
                f"the answers file has {key}: {value!r}, which is not {_TYPE_WORDS[allowed[0]]}",
                hint=f"correct {key} in .copier-answers.yml, or {_RESTORE_HINT}; commit, and run again",
            )


def default_public_url(domain: str, https_port: Any) -> str:
    """The `public_url` question's default: the domain on the published HTTPS port (copier.yml)."""
    port = int(https_port or 443)
    return f"https://{domain}" + ("" if port == 443 else f":{port}")


def load_answers(project_dir: Path) -> Answers:
    """Read and check the answers file, with a fix for each way it can be missing or broken."""
    path = project_dir / ANSWERS_FILE
    if not path.is_file():
        raise ProjectError(
            f"{path} not found: this folder was not generated by this template",
            hint="run scaffold in the folder of a generated stack, or generate one with `scaffold new DEST`",
        )
    from scaffold.yamlfile import YAMLError, read_yaml

    try:
        data = read_yaml(path)
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}", hint=_RESTORE_HINT) from None
    if not isinstance(data, dict):
        raise ProjectError(
            f"{path} is not a mapping of answers", hint="restore it from git or from .scaffold/backups/"
        )
    return Answers.from_mapping(data)


def public_url_update(answers: Answers, data: dict[str, Any]) -> dict[str, str]:
    """The `public_url` an update that changes `domain` or `https_port` needs, when none is given.

    copier keeps a stored answer, so without this a public URL that was the default (the published
    port) would stay on the old port, and one on the old domain would point away from authentik.
    A default public URL follows the new default; a chosen one keeps its port on the new domain.
    """
    if "public_url" in data or not {"domain", "https_port"} & data.keys():
        return {}
    raw = answers.raw or {}
    domain = str(data.get("domain", answers.domain))
    try:
        if answers.public_url == default_public_url(answers.domain, raw.get("https_port")):
            return {"public_url": default_public_url(domain, data.get("https_port", raw.get("https_port")))}
    except ValueError:  # a bad https_port: copier refuses it with its own message
        return {}
    if "domain" not in data:
        return {}
    port = answers.public_url.split("://", 1)[-1].partition(":")[2]
    return {"public_url": f"https://{domain}" + (f":{port}" if port else "")}
