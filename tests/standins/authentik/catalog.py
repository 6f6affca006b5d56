"""What the stand-in knows from its blueprints: providers the embedded outpost serves, by host.

Files are (re-)applied when their size or modification time changes, checked at most once a second
when a request needs the catalog, so a blueprint written into a running stack takes effect within
seconds, as with authentik's file watcher.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import blueprints
from .blueprints import EMBEDDED_OUTPOST, BlueprintError, Ref, State
from .log import log


@dataclass(frozen=True)
class User:
    username: str
    name: str
    email: str
    pk: int

    @property
    def uid(self) -> str:
        """authentik's `uid`: a hash of the user's primary key and the installation."""
        return hashlib.sha256(f"{self.pk}-standin".encode()).hexdigest()


USERS = {
    "akadmin": User("akadmin", "authentik Default Admin", "root@localhost", 1),
    "alice": User("alice", "Alice Example", "alice@example.org", 2),
}


@dataclass(frozen=True)
class Provider:
    """A proxy provider with its application, as the outpost receives it from authentik's API."""

    name: str
    external_host: str
    mode: str
    client_id: str
    app_slug: str
    app_name: str
    groups: tuple[str, ...]  # groups bound to the application; empty: everyone may use it
    skip_path_regex: tuple[str, ...]
    served: bool  # in the embedded outpost's providers

    @property
    def host(self) -> str:
        """The host (with a port when one is given) the outpost matches against the request's."""
        return urlsplit(self.external_host).netloc

    @property
    def https(self) -> bool:
        return self.external_host.lower().startswith("https://")

    @property
    def cookie_name(self) -> str:
        """authentik names the session cookie after the first 8 characters of the client ID."""
        return f"authentik_proxy_{self.client_id[:8]}"

    def allowlisted(self, path: str) -> bool:
        return any(re.search(pattern, path) for pattern in self.skip_path_regex)


def _client_id(name: str, fields: dict) -> str:
    given = fields.get("client_id")
    return str(given) if given else hashlib.sha256(f"client-{name}".encode()).hexdigest()[:40]


class Catalog:
    """Blueprint state plus the derived lookups; `refresh()` re-applies changed files."""

    def __init__(self, directory: Path, environ: dict[str, str] | None = None, interval: float = 1.0) -> None:
        self.directory = directory
        self.environ = dict(os.environ if environ is None else environ)
        self.interval = interval
        self.state = State.fresh()
        self.applied: dict[str, tuple[int, int]] = {}
        self.errors: dict[str, str] = {}
        self._checked = 0.0
        self.providers: dict[str, Provider] = {}
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return
        self._checked = now
        changed = False
        for path, size, mtime in blueprints.signature(blueprints.blueprint_files(self.directory)):
            if self.applied.get(path) == (size, mtime):
                continue
            self.applied[path] = (size, mtime)
            changed = True
            self._apply_file(Path(path))
        if changed or force:
            self.providers = self._providers()

    def _apply_file(self, path: Path) -> None:
        try:
            document = blueprints.load_text(path.read_text())
            self.state = blueprints.apply(self.state, document, self.environ)
        except (BlueprintError, OSError, ValueError, TypeError, IndexError) as exc:
            self.errors[str(path)] = str(exc)
            log("warning", "Blueprint validation failed", path=str(path), error=str(exc))
            return
        except Exception as exc:  # a YAML error: authentik logs it and goes on
            self.errors[str(path)] = f"{type(exc).__name__}: {exc}"
            log("warning", "Blueprint could not be loaded", path=str(path), error=str(exc))
            return
        self.errors.pop(str(path), None)
        log("info", "Blueprint applied successfully", path=str(path))

    def _providers(self) -> dict[str, Provider]:
        outpost = self.state.get("authentik_outposts.outpost", EMBEDDED_OUTPOST) or {}
        served = {ref.key for ref in outpost.get("providers") or [] if isinstance(ref, Ref)}
        apps = {
            fields["provider"].key: (slug, fields)
            for slug, fields in self.state.all("authentik_core.application").items()
            if isinstance(fields.get("provider"), Ref)
        }
        result: dict[str, Provider] = {}
        for name, fields in self.state.all("authentik_providers_proxy.proxyprovider").items():
            slug, app = apps.get(name, ("", {}))
            provider = Provider(
                name=name,
                external_host=str(fields["external_host"]).rstrip("/"),
                mode=str(fields.get("mode", "proxy")),
                client_id=_client_id(name, fields),
                app_slug=slug,
                app_name=str(app.get("name", "")),
                groups=self._bound_groups(slug),
                skip_path_regex=tuple(
                    line for line in str(fields.get("skip_path_regex") or "").splitlines() if line.strip()
                ),
                served=name in served,
            )
            result[provider.client_id] = provider
        return result

    def _bound_groups(self, slug: str) -> tuple[str, ...]:
        if not slug:
            return ()
        groups = []
        for binding in self.state.all("authentik_policies.policybinding").values():
            target, group = binding.get("target"), binding.get("group")
            bound = isinstance(target, Ref) and target.key == slug and isinstance(group, Ref)
            if bound and binding.get("enabled", True):
                groups.append(group.key)
        return tuple(sorted(set(groups)))

    # ----------------------------------------------------------------- lookups used by the outpost

    def served_for_host(self, host: str) -> Provider | None:
        """The provider the embedded outpost serves for this host (exact host[:port] match)."""
        self.refresh()
        for provider in self.providers.values():
            if provider.served and provider.host == host:
                return provider
        return None

    def by_client_id(self, client_id: str) -> Provider | None:
        self.refresh()
        return self.providers.get(client_id)

    def authentik_host(self) -> str:
        """The embedded outpost's `authentik_host` config: where browsers are sent to log in."""
        outpost = self.state.get("authentik_outposts.outpost", EMBEDDED_OUTPOST) or {}
        return str((outpost.get("config") or {}).get("authentik_host") or "")

    def set_authentik_host(self, url: str) -> None:
        """What authentik's admin interface does on its first visit when the value is empty."""
        outpost = self.state.get("authentik_outposts.outpost", EMBEDDED_OUTPOST)
        if outpost is not None and not self.authentik_host():
            outpost["config"] = {**(outpost.get("config") or {}), "authentik_host": url}

    def user(self, username: str) -> User | None:
        if self.state.get("authentik_core.user", username) is None:
            return None
        return USERS.get(username) or User(username, username, "", 1000 + len(username))

    def groups_of(self, username: str) -> list[str]:
        result = []
        for name, fields in self.state.all("authentik_core.group").items():
            members = {m.key if isinstance(m, Ref) else str(m) for m in fields.get("users") or []}
            if username in members:
                result.append(name)
        return sorted(result)
