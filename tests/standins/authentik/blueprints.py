"""authentik blueprints, read the way authentik reads them: every `*.yaml` under the blueprints
directory (AUTHENTIK_BLUEPRINTS_DIR, default `/blueprints`; custom ones are mounted at
`/blueprints/custom/...`), applied in path order, re-applied when a file changes.

What the stand-in keeps is what the embedded outpost needs: proxy providers, applications, groups,
policy bindings and the embedded outpost's providers and config. The rules that make a hand-written
blueprint fail in real authentik are kept too:
- a blueprint is applied as one transaction: one bad entry and nothing of that file is applied;
- `!KeyOf` only sees entries of the same file that come earlier; `!Find` only sees what exists;
- objects stay when their file disappears (authentik's database keeps them), `state: absent` removes;
- setting the outpost's `providers` *replaces* the list (a many-to-many field), so two blueprints that
  each set the embedded outpost's providers to their own provider leave only the last one served.
Unknown models are accepted and ignored, as the stand-in has nothing to serve for them.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EMBEDDED_OUTPOST = "authentik Embedded Outpost"
EMBEDDED_MANAGED = "goauthentik.io/outposts/embedded"
# Flows and groups a fresh authentik has (blueprints in /blueprints/default and system).
DEFAULT_FLOWS = frozenset(
    {
        "default-authentication-flow",
        "default-invalidation-flow",
        "default-provider-authorization-implicit-consent",
        "default-provider-authorization-explicit-consent",
        "default-provider-invalidation-flow",
        "default-source-authentication",
        "default-source-enrollment",
        "default-user-settings-flow",
        "initial-setup",
    }
)
DEFAULT_GROUPS = ("authentik Admins",)
# akadmin as after the initial set-up, and one more user (in no group) for group-restriction tests.
BUILTIN_USERS = ("akadmin", "alice")
PROXY_MODES = frozenset({"proxy", "forward_single", "forward_domain"})


class BlueprintError(Exception):
    """A blueprint that authentik would refuse to apply; the message names the entry."""


# --------------------------------------------------------------------------- YAML with authentik's tags


@dataclass(frozen=True)
class Tag:
    """A custom tag as written (`!Find [...]`), resolved only when the entry is applied."""

    name: str
    value: Any


class BlueprintLoader(yaml.SafeLoader):
    """SafeLoader that accepts authentik's tags instead of failing on them."""


TAGS = (
    "KeyOf",
    "Find",
    "FindObject",
    "Env",
    "Context",
    "Format",
    "If",
    "Condition",
    "Enumerate",
    "Index",
    "Value",
    "AtIndex",
    "ParseJSON",
    "File",
)


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return Tag(suffix, value)


for _tag in TAGS:
    BlueprintLoader.add_constructor(f"!{_tag}", lambda ldr, node, t=_tag: _construct(ldr, t, node))


def load_text(text: str) -> dict[str, Any]:
    """Parse one blueprint document; tags stay `Tag` objects."""
    data = yaml.load(text, Loader=BlueprintLoader)
    if not isinstance(data, dict):
        raise BlueprintError("a blueprint is a YAML mapping with `version` and `entries`")
    if data.get("version") != 1:
        raise BlueprintError(f"unsupported blueprint version {data.get('version')!r} (authentik reads 1)")
    entries = data.get("entries")
    if isinstance(entries, dict):  # authentik also accepts entries grouped under names
        entries = [entry for group in entries.values() for entry in (group or [])]
    if not isinstance(entries, list):
        raise BlueprintError("`entries` must be a list")
    data["entries"] = entries
    return data


# --------------------------------------------------------------------------- what authentik would store


@dataclass(frozen=True)
class Ref:
    """What `!KeyOf`/`!Find` return: a stored object's primary key."""

    model: str
    key: str


@dataclass
class State:
    """The part of authentik's database the stand-in models: model -> key -> fields."""

    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> State:
        state = cls()
        for slug in DEFAULT_FLOWS:
            state.put("authentik_flows.flow", slug, {"slug": slug})
        for name in DEFAULT_GROUPS:
            state.put("authentik_core.group", name, {"name": name, "users": ["akadmin"]})
        for username in BUILTIN_USERS:
            state.put("authentik_core.user", username, {"username": username})
        state.put(
            "authentik_outposts.outpost",
            EMBEDDED_OUTPOST,
            {"name": EMBEDDED_OUTPOST, "managed": EMBEDDED_MANAGED, "providers": [], "config": {}},
        )
        return state

    def put(self, model: str, key: str, fields: dict[str, Any]) -> None:
        self.objects.setdefault(model, {})[key] = fields

    def get(self, model: str, key: str) -> dict[str, Any] | None:
        return self.objects.get(model, {}).get(key)

    def all(self, model: str) -> dict[str, dict[str, Any]]:
        return self.objects.get(model, {})

    def find(self, model: str, query: dict[str, Any]) -> Ref | None:
        for key, fields in self.all(model).items():
            if all(_plain(fields.get(name)) == _plain(value) for name, value in query.items()):
                return Ref(model, key)
        return None


def _plain(value: Any) -> Any:
    return value.key if isinstance(value, Ref) else value


# Which field identifies an object of each model the stand-in stores (authentik: the primary key).
KEY_FIELDS = {
    "authentik_providers_proxy.proxyprovider": "name",
    "authentik_core.application": "slug",
    "authentik_core.group": "name",
    "authentik_core.user": "username",
    "authentik_flows.flow": "slug",
    "authentik_outposts.outpost": "name",
}


class _Resolver:
    """Resolves tags of one blueprint against the state being built."""

    def __init__(self, state: State, context: dict[str, Any], environ: dict[str, str]) -> None:
        self.state = state
        self.context = context
        self.environ = environ
        self.ids: dict[str, Ref] = {}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Tag):
            return self._tag(value)
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        return value

    def _tag(self, tag: Tag) -> Any:
        args = tag.value if isinstance(tag.value, list) else [tag.value]
        if tag.name == "KeyOf":
            ref = self.ids.get(str(tag.value))
            if ref is None:
                raise BlueprintError(
                    f"KeyOf: failed to find entry with `id` of `{tag.value}` and a model instance"
                )
            return ref
        if tag.name == "Find":
            model, *pairs = (self.resolve(arg) for arg in args)
            query = {str(pair[0]): _plain(pair[1]) for pair in pairs}
            return self.state.find(str(model), query)
        if tag.name == "Env":
            default = self.resolve(args[1]) if len(args) > 1 else None
            return self.environ.get(str(self.resolve(args[0])), default)
        if tag.name == "Context":
            default = self.resolve(args[1]) if len(args) > 1 else None
            return self.context.get(str(self.resolve(args[0])), default)
        if tag.name == "Format":
            template, *values = (self.resolve(arg) for arg in args)
            return str(template) % tuple(_plain(v) for v in values)
        if tag.name == "If":
            condition, *branches = args
            truthy = bool(self.resolve(condition))
            if not branches:
                return truthy
            return self.resolve(branches[0] if truthy else (branches[1] if len(branches) > 1 else None))
        if tag.name == "ParseJSON":
            return json.loads(str(self.resolve(args[0])))
        if tag.name == "Condition":
            mode, *values = args
            return _condition(str(mode).upper(), [bool(self.resolve(v)) for v in values])
        if tag.name == "AtIndex":
            sequence, index, *default = (self.resolve(arg) for arg in args)
            try:
                return sequence[index]
            except (IndexError, KeyError, TypeError):
                if default:
                    return default[0]
                raise BlueprintError(f"AtIndex: {index!r} not found in {sequence!r}") from None
        raise BlueprintError(f"!{tag.name} is valid in authentik but not modelled by the stand-in")


def _condition(mode: str, values: list[bool]) -> bool:
    """authentik's `!Condition [MODE, ...]`."""
    results = {
        "AND": all(values),
        "NAND": not all(values),
        "OR": any(values),
        "NOR": not any(values),
        "XOR": sum(values) % 2 == 1,
        "XNOR": sum(values) % 2 == 0,
    }
    if mode not in results:
        raise BlueprintError(f"!Condition: unknown mode {mode!r}")
    return results[mode]


def _as_mapping(entry: Any, index: int) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        raise BlueprintError(f"entry {index}: every entry needs a `model`")
    return entry


def _entry_conditions_hold(resolver: _Resolver, entry: dict[str, Any]) -> bool:
    return all(bool(resolver.resolve(c)) for c in entry.get("conditions", []) or [])


# Called with each entry's index, model, resolved identifiers and resolved attrs (schema checks use it).
EntryHook = Callable[[int, dict[str, Any], dict[str, Any], dict[str, Any]], None]


def apply(
    state: State, blueprint: dict[str, Any], environ: dict[str, str], on_entry: EntryHook | None = None
) -> State:
    """The state after applying one blueprint, or BlueprintError (the state is then unchanged)."""
    work = copy.deepcopy(state)
    resolver = _Resolver(work, dict(blueprint.get("context") or {}), environ)
    for index, raw in enumerate(blueprint["entries"]):
        entry = _as_mapping(raw, index)
        if not _entry_conditions_hold(resolver, entry):
            continue
        model = entry["model"]
        where = f"entry {index} ({model})"
        identifiers = resolver.resolve(entry.get("identifiers") or {})
        attrs = resolver.resolve(entry.get("attrs") or {})
        if not isinstance(identifiers, dict) or not isinstance(attrs, dict):
            raise BlueprintError(f"{where}: `identifiers` and `attrs` must be mappings")
        if on_entry is not None:
            on_entry(index, entry, identifiers, attrs)
        ref = _apply_entry(work, model, identifiers, attrs, entry.get("state", "present"), where)
        if ref is not None and entry.get("id"):
            resolver.ids[str(entry["id"])] = ref
    return work


def _apply_entry(
    state: State, model: str, identifiers: dict[str, Any], attrs: dict[str, Any], mode: str, where: str
) -> Ref | None:
    key_field = KEY_FIELDS.get(model)
    if key_field is None and model != "authentik_policies.policybinding":
        return None  # a model the stand-in has nothing to serve for
    if model == "authentik_policies.policybinding":
        key = json.dumps({k: _plain(v) for k, v in sorted(identifiers.items())}, default=str)
    elif model == "authentik_outposts.outpost" and identifiers.get("managed") == EMBEDDED_MANAGED:
        key = EMBEDDED_OUTPOST
    else:
        key = identifiers.get(key_field) or attrs.get(key_field)  # type: ignore[arg-type]
        if not key:
            raise BlueprintError(f"{where}: identifiers must name the object's `{key_field}`")
    existing = state.get(model, str(key))
    if mode == "absent":
        state.objects.get(model, {}).pop(str(key), None)
        return None
    if existing is not None and mode in ("created", "must_created"):
        if mode == "must_created":
            raise BlueprintError(f"{where}: object exists but state is must_created")
        return Ref(model, str(key))
    fields = {**(existing or {}), **identifiers, **attrs}
    _check(model, fields, where)
    state.put(model, str(key), fields)
    return Ref(model, str(key))


def _check(model: str, fields: dict[str, Any], where: str) -> None:
    """The serializer validation authentik applies to the fields the stand-in uses."""
    if model == "authentik_providers_proxy.proxyprovider":
        if fields.get("mode", "proxy") not in PROXY_MODES:
            raise BlueprintError(f"{where}: mode must be one of {sorted(PROXY_MODES)}")
        host = str(fields.get("external_host") or "")
        if not re.match(r"^https?://[^/\s]+", host):
            raise BlueprintError(f"{where}: external_host must be an http(s) URL, got {host!r}")
        if not isinstance(fields.get("authorization_flow"), Ref):
            raise BlueprintError(f"{where}: authorization_flow: This field is required.")
    elif model == "authentik_core.application":
        provider = fields.get("provider")
        if provider is not None and not isinstance(provider, Ref):
            raise BlueprintError(f"{where}: provider must reference a provider (!KeyOf or !Find)")
    elif model == "authentik_policies.policybinding":
        if not any(isinstance(fields.get(k), Ref) for k in ("policy", "group", "user")):
            raise BlueprintError(f"{where}: One of 'policy', 'group' or 'user' must be set.")
        if not isinstance(fields.get("target"), Ref):
            raise BlueprintError(f"{where}: target must reference an application (!KeyOf or !Find)")
    elif model == "authentik_outposts.outpost":
        providers = fields.get("providers") or []
        if not all(isinstance(p, Ref) for p in providers):
            raise BlueprintError(f"{where}: providers must all reference existing providers")


# --------------------------------------------------------------------------- files on disk


def blueprint_files(directory: Path) -> list[Path]:
    """Every `*.yaml` below `directory`, in path order (authentik's discovery walks recursively)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.rglob("*.yaml") if path.is_file())


def signature(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detection: path, size and modification time of every file."""
    result = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        result.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(result)


def blueprints_dir() -> Path:
    return Path(os.environ.get("AUTHENTIK_BLUEPRINTS_DIR") or "/blueprints")
