"""Check an authentik blueprint the way authentik would see it, without an authentik.

`validate_blueprint` reports, for a blueprint file or its text:
- what authentik's published blueprint JSON schema says of it (an extract for the models forward auth
  uses: tests/fixtures/authentik-blueprint-schema.json, see its README), after authentik's YAML tags
  are resolved to plain values (`!KeyOf`/`!Find` become the primary key of the object they name: an
  integer for providers and users, a UUID for the rest; a `!Find` that finds nothing becomes null);
- what applying it to a fresh authentik would refuse (the authentik stand-in's rules: `!KeyOf` of an
  unknown id, a missing authorization flow, a binding to a group that does not exist, ...).
An empty list means valid.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from tests.standins.authentik.blueprints import BlueprintError, Ref, State, apply, load_text

SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "authentik-blueprint-schema.json"
INTEGER_KEYS = frozenset({"authentik_providers_proxy.proxyprovider", "authentik_core.user"})
PLACEHOLDER_UUID = "00000000-0000-4000-8000-000000000000"
# Models authentik applies that its published schema (the version stored) has no entry for.
NOT_IN_PUBLISHED_SCHEMA = frozenset({"authentik_policies.policybinding"})


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def _entry_schemas() -> dict[str, dict[str, Any]]:
    """model -> the schema's branch for entries of that model (with the shared definitions)."""
    schema = _schema()
    return {
        branch["properties"]["model"]["const"]: {"$defs": schema["$defs"], **branch}
        for branch in schema["$defs"]["blueprint_entry"]["oneOf"]
    }


def _errors(schema: dict[str, Any], instance: Any, prefix: str) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path)
        problems.append(f"schema: {prefix}{where}: {error.message}")
    return problems


def _plain(value: Any) -> Any:
    if isinstance(value, Ref):
        return 1 if value.model in INTEGER_KEYS else PLACEHOLDER_UUID
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _text(path_or_text: str | Path) -> str:
    if isinstance(path_or_text, Path):
        return path_or_text.read_text()
    if "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml")):
        return Path(path_or_text).read_text()
    return path_or_text


def validate_blueprint(path_or_text: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    """Problems authentik would have with this blueprint; [] when there are none."""
    try:
        document = load_text(_text(path_or_text))
    except (BlueprintError, ValueError) as exc:
        return [str(exc)]
    except Exception as exc:  # a YAML syntax error
        return [f"not YAML: {exc}"]
    resolved: list[tuple[int, dict[str, Any]]] = []

    def collect(index: int, entry: dict[str, Any], identifiers: dict, attrs: dict) -> None:
        plain = {key: value for key, value in entry.items() if key not in ("identifiers", "attrs")}
        plain.update(identifiers=_plain(identifiers), attrs=_plain(attrs))
        plain.pop("conditions", None)  # already evaluated
        resolved.append((index, plain))

    problems: list[str] = []
    try:
        apply(State.fresh(), document, dict(environ or {}), on_entry=collect)
    except BlueprintError as exc:
        problems.append(f"authentik would refuse it: {exc}")
    top = {key: value for key, value in document.items() if key != "entries"}
    problems += _errors(_schema(), {**top, "entries": []}, "")
    branches = _entry_schemas()
    for index, entry in resolved:
        model = entry.get("model")
        if model in NOT_IN_PUBLISHED_SCHEMA:
            continue
        if model not in branches:
            problems.append(f"entry {index}: model {model!r} is not covered by {SCHEMA.name}")
            continue
        problems += _errors(branches[model], entry, f"entries/{index}/")
    return problems
