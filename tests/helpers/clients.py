"""What the end-to-end tests run against a stack from the outside: client scripts, certificate and
log readers, nginx state. Shared by every module in tests/e2e/."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.helpers.stack import DOMAIN, Stack
from tests.helpers.stack import docker as docker_cli

WSCLIENT = Path(__file__).resolve().parents[1] / "standins" / "wsclient.py"
SERVICES = ("postgresql", "server", "worker", "nginx", "certbot")
PLACEHOLDER_CN = "scaffold placeholder certificate"  # template/certbot/scaffold_certbot.py
CERT_CHECK_SECONDS = 5  # SCAFFOLD_CERT_CHECK_SECONDS in template/compose.yaml.jinja
DEPLOY_HOOK = "python3 /opt/scaffold/scaffold_certbot.py activate"  # template/certbot/certbot-loop.sh
# "Within a few seconds of its container start": the placeholder exists before nginx starts, so
# only the image's entrypoint scripts and nginx's own start-up stand between them.
PLACEHOLDER_WITHIN_S = 5.0

# --------------------------------------------------------------------------- client-side scripts

# Polls nginx over TLS from before nginx exists until a second, different certificate is served.
# Prints when each distinct certificate (DER) was first seen and what HTTP status came back.
START_PROBE = r"""
import base64, json, socket, ssl, sys, time
host, sni, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
seen, errors, attempts = [], {}, 0
end = time.time() + limit
while time.time() < end and len(seen) < 2:
    attempts += 1
    try:
        with socket.create_connection((host, 443), timeout=1) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
                request = f"GET /startup-probe HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
                tls.sendall(request.encode())
                head = b""
                while b"\r\n" not in head:
                    chunk = tls.recv(256)
                    if not chunk:
                        break
                    head += chunk
        now = time.time()
        der64 = base64.b64encode(der).decode()
        if not seen or seen[-1]["der"] != der64:
            seen.append({"t": now, "der": der64, "status": head.split(b"\r\n", 1)[0].decode("latin-1")})
    except OSError as exc:
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    time.sleep(0.05)
print(json.dumps({"seen": seen, "errors": errors, "attempts": attempts}))
"""

# New TLS connection per request until the stop file appears; counts successes and failures and
# which certificate each successful request was served with.
LOAD_LOOP = r"""
import base64, hashlib, json, os, socket, ssl, sys, time
host, sni, vhost, stop, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ok, failed, failures, certs, n = 0, 0, [], {}, 0
started = time.time()
while not os.path.exists(stop) and time.time() - started < limit:
    n += 1
    try:
        with socket.create_connection((host, 443), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
                request = f"GET /renewal-load/{n} HTTP/1.1\r\nHost: {vhost}\r\nConnection: close\r\n\r\n"
                tls.sendall(request.encode())
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 200 ") or json.loads(body)["scheme"] != "https":
            raise ValueError(f"unexpected answer {status!r}")
        ok += 1
        key = hashlib.sha256(der).hexdigest()
        entry = certs.setdefault(key, {"der": base64.b64encode(der).decode(), "count": 0})
        entry["count"] += 1
        entry["last"] = time.time()
    except Exception as exc:
        failed += 1
        if len(failures) < 20:
            failures.append(f"{time.time():.3f} request {n}: {exc!r}")
print(json.dumps({"ok": ok, "failed": failed, "failures": failures, "certs": certs,
                  "seconds": time.time() - started}))
"""

# TCP reachability of one address from whatever network namespace this runs in.
TCP_PROBE = r"""
import json, socket, sys
name, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
result = {}
try:
    infos = socket.getaddrinfo(name, port, proto=socket.IPPROTO_TCP)
    result["resolves_to"] = sorted({info[4][0] for info in infos})
except OSError as exc:
    result["resolve_error"] = repr(exc)
try:
    socket.create_connection((address, port), timeout=3).close()
    result["connected"] = True
except OSError as exc:
    result["connected"] = False
    result["connect_error"] = repr(exc)
print(json.dumps(result))
"""

# --------------------------------------------------------------------------- helpers


def docker_time(value: str) -> float:
    """Docker's RFC 3339 timestamp with nanoseconds, as a Unix time."""
    match = re.fullmatch(r"(.+T[\d:]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    assert match, f"unexpected Docker timestamp {value!r}"
    base, fraction, zone = match.groups()
    stamp = dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + float(f"0.{fraction or 0}")


def run_client_script(
    stack: Stack, script: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", "-i", stack.start_client(), "python3", "-", *args],
        input=script, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def cert_from_der64(der64: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(der64))


def common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def describe(cert: x509.Certificate) -> str:
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    return f"subject={subject!r} issuer={issuer!r} serial={cert.serial_number:x}"


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(
                cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
            )
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def served_certificate(stack: Stack, sni: str = DOMAIN) -> x509.Certificate:
    """The certificate nginx serves on the published HTTPS port, as a client on the host sees it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", stack.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der, "no certificate from nginx"
    return x509.load_der_x509_certificate(der)


def json_log(stack: Stack, service: str) -> list[dict[str, Any]]:
    """The JSON lines a service logged (docker logs: no compose prefix)."""
    result = docker_cli("logs", stack.container_id(service))
    entries = []
    for line in (result.stdout + result.stderr).splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def nginx_master_pid(stack: Stack) -> int:
    """The master's PID from its pid file (the stand-in and the official image use /run/nginx.pid)."""
    out = stack.exec("nginx", "sh", "-c", "cat /run/nginx.pid 2>/dev/null || cat /var/run/nginx.pid").stdout
    return int(out.strip())


def nginx_state(stack: Stack) -> tuple[str, int, int]:
    """(State.StartedAt, RestartCount, master PID) of the nginx container."""
    data = stack.inspect("nginx")
    return data["State"]["StartedAt"], data["RestartCount"], nginx_master_pid(stack)


def pebble_orders(stack: Stack) -> int:
    return stack.logs("pebble").count("Added order")


def curl(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return stack.client("curl", "-sS", "--max-time", "10", *args, check=check)


def trusted_networks(stack: Stack) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    value = stack.env().get("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS") or ""
    return [ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip()]


def in_any(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in networks)


def upstream_sockets(stack: Stack, port: int) -> dict[int, str]:
    """nginx's TCP sockets to authentik: local port -> state (01 ESTABLISHED, 06 TIME_WAIT, ...)."""
    text = stack.exec("nginx", "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").stdout
    sockets = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1] or fields[0] == "sl":
            continue
        local, remote, state = fields[1], fields[2], fields[3]
        if int(remote.rsplit(":", 1)[1], 16) == port:
            sockets[int(local.rsplit(":", 1)[1], 16)] = state
    return sockets
