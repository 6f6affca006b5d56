"""`ak` command words of the authentik image: server, worker, healthcheck (and dump_config).

The start-up checks mirror what makes a real authentik fail, so a stack that would not start in
production does not start in tests either.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

from . import config
from .blueprints import blueprints_dir
from .catalog import Catalog
from .database import DatabaseError, wait_for_database
from .log import AccessLog, log
from .server import App, serve
from .trust import TrustPolicy

HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_MAX_AGE = 30.0


def _common_start(mode: str) -> int:
    """Checks shared by server and worker; returns an exit code, 0 to go on."""
    config.mode_file().write_text(mode)
    try:
        config.web_path()
    except ValueError as exc:
        log("error", "Invalid configuration", error=str(exc))
        return 1
    if not config.setting("SECRET_KEY"):
        log("error", "Secret key missing: AUTHENTIK_SECRET_KEY is not set or empty, refusing to start.")
        return 1
    try:
        wait_for_database(config.Database.from_env())
    except DatabaseError as exc:
        log("error", "Failed to connect to PostgreSQL", error=str(exc))
        return 1
    return 0


def _tls_context() -> ssl.SSLContext:
    """A self-signed certificate, made at start like authentik's own default certificate."""
    directory = config.state_dir()
    cert, key = directory / "authentik-standin.crt", directory / "authentik-standin.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "365", "-subj", "/CN=authentik default certificate",
            "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def _run_server() -> None:
    app = App(TrustPolicy.from_env(dict(os.environ)), AccessLog(), config.web_path())
    http = config.listen_addresses("LISTEN__HTTP", "[::]:9000")
    https = config.listen_addresses("LISTEN__HTTPS", "[::]:9443")
    servers = await serve(app, http, https, _tls_context())
    log(
        "info",
        "Starting authentik server (stand-in)",
        listen=[str(s.sockets[0].getsockname()[:2]) for s in servers],
        trusted_proxy_cidrs=[str(n) for n in app.policy.networks],
        web_path=app.web_path,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    app.access_log.flush()
    log("info", "Shutting down authentik server")


def server() -> int:
    code = _common_start("server")
    if code:
        return code
    asyncio.run(_run_server())
    return 0


def worker() -> int:
    code = _common_start("worker")
    if code:
        return code
    log("info", "Starting authentik worker (stand-in)")

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    heartbeat = config.heartbeat_file()
    # authentik's worker applies the blueprints; the stand-in's worker reads them too, so that its log
    # says which ones apply and which fail (the server keeps its own copy, having no shared database).
    catalog = Catalog(blueprints_dir())
    while True:
        heartbeat.write_text(str(time.time()))
        time.sleep(HEARTBEAT_INTERVAL)
        catalog.refresh(force=True)


def healthcheck() -> int:
    """0 when this container's process is healthy, as the image's HEALTHCHECK expects."""
    try:
        mode = config.mode_file().read_text().strip()
    except OSError:
        print("no authentik process started in this container", file=sys.stderr)
        return 1
    if mode == "worker":
        try:
            age = time.time() - config.heartbeat_file().stat().st_mtime
        except OSError:
            return 1
        return 0 if age < HEARTBEAT_MAX_AGE else 1
    port = config.listen_addresses("LISTEN__HTTP", "[::]:9000")[0][1]
    try:
        url = f"http://127.0.0.1:{port}{config.web_path()}-/health/live/"
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except (OSError, ValueError):
        return 1


def dump_config() -> int:
    """Print the AUTHENTIK_* settings as nested JSON, like `ak dump_config`."""
    tree: dict = {}
    for name in sorted(os.environ):
        if not name.startswith(config.PREFIX):
            continue
        keys = name.removeprefix(config.PREFIX).lower().split("__")
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                break
        else:
            node[keys[-1]] = config.setting("__".join(keys).upper())
    print(json.dumps(tree, indent=2, sort_keys=True))
    return 0


COMMANDS = {"server": server, "worker": worker, "healthcheck": healthcheck, "dump_config": dump_config}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: ak {{{','.join(COMMANDS)}}}  (authentik stand-in)", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]]()
