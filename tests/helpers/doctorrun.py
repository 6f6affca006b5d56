"""Running `scaffold doctor` in tests: offline contexts, made-up certificates, a checked JSON report.

Shared by the doctor tests with and without Docker (tests/test_doctor*.py, tests/e2e/).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import time
from pathlib import Path
from typing import Any

from scaffold import doctor, envkeys
from scaffold.answers import Answers
from scaffold.cli import main as cli_main
from scaffold.doctor import core as doctor_core
from scaffold.doctor.core import Context
from scaffold.errors import DockerUnavailable
from tests.helpers.stack import Stack

DOMAIN = "sso.example.test"
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def make_cert(
    *,
    cn: str = DOMAIN,
    names: tuple[str, ...] = (DOMAIN,),
    not_before: dt.datetime = NOW - dt.timedelta(days=10),
    not_after: dt.datetime = NOW + dt.timedelta(days=80),
    issuer_cn: str | None = "Test Intermediate CA",
    issuer_o: str | None = "Test CA Org",
) -> tuple[bytes, bytes]:
    """(DER certificate, PEM private key); self-signed when issuer_cn is None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    if issuer_cn is None:
        issuer, signer = subject, key
    else:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]
        if issuer_o:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_o))
        issuer, signer = x509.Name(attrs), ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    cert = builder.sign(signer, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.DER), key_pem


def offline_context(root: Path, *, offline: bool = False, **answers: Any) -> Context:
    """A Context whose Docker is unavailable, so nothing talks to a daemon."""
    data = {"project_name": "doctortest", "domain": DOMAIN, "authentik_version": "2026.8.7", **answers}
    ctx = Context(root=root, answers=Answers.from_mapping(data), offline=offline)
    ctx.__dict__["_docker_connection"] = (None, DockerUnavailable("no Docker in this test", hint="none"))
    return ctx


SECRETS = {envkeys.PG_PASS: "pg-" + "p" * 45, envkeys.SECRET_KEY: "sk-" + "s" * 77}


#: 10.203.7.0/28 without its gateway 10.203.7.1 (Docker's default: the first host).
GOOD_CIDRS = "10.203.7.0/32,10.203.7.2/31,10.203.7.4/30,10.203.7.8/29"


def env_text(**overrides: str | None) -> str:
    values: dict[str, str | None] = {
        **SECRETS,
        envkeys.TAG: "2026.8.7",
        envkeys.PROXY_SUBNET: "10.203.7.0/28",
        envkeys.TRUSTED_CIDRS: GOOD_CIDRS,
        **overrides,
    }
    return "".join(f"{key}={value}\n" for key, value in values.items() if value is not None)


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "null": type(None),
}


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """A hand-written validator for the JSON Schema keywords JSON_SCHEMA uses."""
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not schema_errors(value, s, where)]
        return [] if len(matching) == 1 else [f"{where}: matches {len(matching)} of oneOf"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[t]) and not (t == "integer" and isinstance(value, bool)) for t in types
        )
        if not ok:
            return [f"{where}: {value!r} is not {types}"]
    return _value_errors(value, schema, where) + _member_errors(value, schema, where)


def _value_errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """const, enum, minimum, minLength and pattern."""
    checks = [
        ("const", lambda: value != schema["const"], f"{value!r} != {schema.get('const')!r}"),
        ("enum", lambda: value not in schema["enum"], f"{value!r} not in {schema.get('enum')}"),
        ("minimum", lambda: value < schema["minimum"], f"{value} < {schema.get('minimum')}"),
        ("minLength", lambda: len(value) < schema["minLength"], "too short"),
        (
            "pattern",
            lambda: not re.search(schema["pattern"], value),
            f"{value!r} does not match {schema.get('pattern')}",
        ),
    ]
    return [f"{where}: {text}" for keyword, failed, text in checks if keyword in schema and failed()]


def _member_errors(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """required, properties, additionalProperties and items."""
    errors: list[str] = []
    if isinstance(value, dict):
        errors += [f"{where}: missing {key}" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{index}]")
    return errors


def assert_valid_report(document: dict[str, Any]) -> None:
    """Valid against JSON_SCHEMA (by hand, and with jsonschema when installed), and self-consistent."""
    assert schema_errors(document, doctor.JSON_SCHEMA) == []
    with contextlib.suppress(ImportError):
        import jsonschema

        jsonschema.Draft202012Validator(doctor.JSON_SCHEMA).validate(document)
    counts = {status: 0 for status in doctor_core.STATUSES}
    for check in document["checks"]:
        counts[check["status"]] += 1
        assert check["group"] == check["id"].split(".")[0]
    assert counts == document["summary"]
    if document["error"] is None:
        assert [c["id"] for c in document["checks"]] == doctor.check_ids()
        assert document["exit_code"] == (1 if counts["fail"] else 0)


class Doctor:
    """One doctor run through the real CLI, parsed."""

    def __init__(self, project: Path, *args: str, secrets: tuple[str, ...]) -> None:
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            self.code = cli_main(["doctor", str(project), "--json", *args])
        self.seconds = time.monotonic() - started
        self.raw = out.getvalue() + err.getvalue()
        for secret in secrets:  # never, in any run
            assert secret not in self.raw
        self.document: dict[str, Any] = json.loads(out.getvalue())
        assert_valid_report(self.document)
        assert self.code == self.document["exit_code"]
        self.checks = {c["id"]: c for c in self.document["checks"]}

    def status(self, check_id: str) -> str:
        return self.checks[check_id]["status"]

    def with_status(self, status: str) -> set[str]:
        return {check_id for check_id, c in self.checks.items() if c["status"] == status}

    def __repr__(self) -> str:
        lines = [f"{c['status']:5} {c['id']}: {c['message']} | fix: {c['fix']}" for c in self.checks.values()]
        return "\n".join(["", *lines])


def secrets_of(stack: Stack) -> tuple[str, ...]:
    env = stack.env()
    return tuple(v for k in ("PG_PASS", "AUTHENTIK_SECRET_KEY") if (v := env.get(k)))
