"""doctor's network checks: does the domain lead here, and can nginx have its ports?

A domain that does not resolve to this host, or a port 80 that something else holds, means no
certificate can ever be issued; both are invisible until a user reports "it does not work". Skipped
with --offline.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import queue
import socket
import threading
from pathlib import Path

from scaffold.doctor.core import NET_TIMEOUT, Check, Context, Outcome, fail, ok, skip, warn
from scaffold.errors import DockerUnavailable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
PROC = Path("/proc")


# -- DNS --------------------------------------------------------------------------------------------------


def resolve(domain: str, timeout: float = NET_TIMEOUT) -> tuple[list[Address], str | None]:
    """The addresses `domain` resolves to on this host, or why not; never waits longer than `timeout`.

    getaddrinfo cannot be interrupted, so it runs in a daemon thread that is abandoned on timeout.
    """
    answers: queue.Queue[tuple[list[Address], str | None]] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(domain, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            answers.put(([], str(exc.args[-1]) if exc.args else str(exc)))
            return
        found: list[Address] = []
        for info in infos:
            try:
                address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            except ValueError:
                continue
            if address not in found:
                found.append(address)
        answers.put((found, None))

    threading.Thread(target=lookup, name="doctor-dns", daemon=True).start()
    try:
        return answers.get(timeout=timeout)
    except queue.Empty:
        return [], f"no answer within {timeout:.0f}s"


def _fib_trie_locals(text: str) -> set[Address]:
    """IPv4 addresses of this host: the `/32 host LOCAL` entries of /proc/net/fib_trie."""
    found: set[Address] = set()
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32 host LOCAL") and last:
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv4Address(last))
    return found


def _if_inet6_locals(text: str) -> set[Address]:
    found: set[Address] = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                found.add(ipaddress.IPv6Address(int(fields[0], 16)))
            except ValueError:
                continue
    return found


def local_addresses(proc: Path = PROC) -> set[Address]:
    """Every address configured on this host's interfaces (Linux /proc; empty elsewhere)."""
    found: set[Address] = set()
    for name, parse in (("net/fib_trie", _fib_trie_locals), ("net/if_inet6", _if_inet6_locals)):
        try:
            found |= parse((proc / name).read_text())
        except OSError:
            continue
    return found


def classify_dns(domain: str, addresses: list[Address], error: str | None, local: set[Address]) -> Outcome:
    """Judge a DNS answer against this host's own addresses."""
    record_fix = (
        f"create an A record (and an AAAA record if this host has public IPv6) for {domain} at your DNS "
        f"provider, pointing at this host's public address; check with `getent hosts {domain}`"
    )
    if error is not None:
        return fail(
            f"{domain} does not resolve ({error}): browsers cannot reach authentik and the CA cannot "
            "validate the domain, so no certificate can be issued",
            record_fix,
        )
    if not addresses:
        return fail(f"{domain} resolves to no address", record_fix)
    shown = ", ".join(map(str, addresses))
    mine = [a for a in addresses if a in local and not a.is_loopback]
    if mine:
        return ok(f"{domain} resolves to {shown}, an address of this host")
    if all(a.is_loopback for a in addresses):
        return warn(
            f"{domain} resolves to {shown} here (an /etc/hosts entry?): other machines and the CA need a "
            "public record",
            f"remove the /etc/hosts line if public DNS has the record; otherwise {record_fix}",
        )
    private = [a for a in addresses if not a.is_global]
    if private:
        return warn(
            f"{domain} resolves to {', '.join(map(str, private))}, a private address that is not this "
            "host's: the CA cannot reach a private address",
            f"point the record at this host's public address (or at the router forwarding ports 80 and 443 "
            f"here); if this is split-horizon DNS, check the public answer with `dig @1.1.1.1 {domain}`",
        )
    public_here = [a for a in local if a.is_global]
    same_family = [a for a in public_here if any(a.version == b.version for b in addresses)]
    if same_family:
        return warn(
            f"{domain} resolves to {shown}, but this host's public addresses are "
            f"{', '.join(map(str, sorted(same_family, key=str)))}",
            f"update the record to this host's address, unless {shown} forwards ports 80 and 443 here",
        )
    return ok(
        f"{domain} resolves to {shown}; this host has no public address of its own (NAT), so make sure "
        f"that is this host's public address and that it forwards ports 80 and 443 here"
    )


def check_dns(ctx: Context) -> Outcome:
    addresses, error = resolve(ctx.domain)
    return classify_dns(ctx.domain, addresses, error, local_addresses())


# -- ports ------------------------------------------------------------------------------------------------


def probe_port(port: int) -> tuple[str, str | None]:
    """("free" | "in-use" | "unknown", detail) for TCP `port` on every address of this host."""
    tried = False
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            tried = True
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "in-use", None
            if exc.errno == errno.EADDRNOTAVAIL:
                continue
            if exc.errno in (errno.EACCES, errno.EPERM):
                return _connect_probe(port, "binding a port below 1024 needs root")
            return "unknown", str(exc)
        finally:
            sock.close()
    return ("free", None) if tried else _connect_probe(port, "no address to bind")


def _connect_probe(port: int, why: str) -> tuple[str, str | None]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return "in-use", None
    except OSError:
        return "free", f"nothing answers on 127.0.0.1:{port} ({why}, so only connecting was tried)"


def accepts(port: int, timeout: float = NET_TIMEOUT) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_inodes(port: int, proc: Path) -> set[str]:
    """The socket inodes of TCP listeners on `port` (/proc/net/tcp and tcp6)."""
    inodes: set[str] = set()
    for name in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _holds_socket(pid_dir: Path, targets: set[str]) -> bool:
    try:
        return any(os.readlink(fd) in targets for fd in (pid_dir / "fd").iterdir())
    except OSError:
        return False


def listener_process(port: int, proc: Path = PROC) -> str | None:
    """The program listening on TCP `port` ("name (pid N)"), when /proc lets us see it."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in proc.iterdir():
        if pid_dir.name.isdigit() and _holds_socket(pid_dir, targets):
            try:
                comm = (pid_dir / "comm").read_text().strip()
            except OSError:
                continue
            return f"{comm} (pid {pid_dir.name})"
    return None


def _publisher(ctx: Context, port: int) -> str | None:
    """Another container that publishes host `port`."""
    if ctx.docker is None:
        return None
    try:
        running = ctx.docker.containers()
    except DockerUnavailable:
        return None
    own = {container.id for items in ctx.containers.values() for container in items}
    return next((c.name for c in running if c.id not in own and port in c.public_tcp_ports), None)


def check_port(ctx: Context, *, answer: str, container_port: int) -> Outcome:
    """Whether `answer`'s host port is published by this stack's nginx, or free for it."""
    port = ctx.http_port if answer == "http_port" else ctx.https_port
    if ctx.docker is not None and not ctx.docker.is_local:
        return skip(
            f"not checked: the Docker daemon ({ctx.docker.endpoint}) is on another host; run doctor there"
        )
    note = ""
    if answer == "http_port" and port != 80:
        note = (
            "; Let's Encrypt's HTTP-01 challenge always connects to port 80, so port 80 of the public "
            f"address must be forwarded to port {port} here"
        )
    nginx = ctx.running("nginx")
    if nginx is not None:
        return _published_by_nginx(nginx.host_ports(container_port), port, answer, container_port, note)
    other = _publisher(ctx, port)
    if other is not None:
        return fail(
            f"port {port} ({answer}) is published by container '{other}', not this stack's nginx: "
            "`docker compose up` cannot publish nginx there",
            f"stop that container (`docker stop {other}`) or give this stack another port "
            f"(`scaffold update --data {answer}=<port>`)",
        )
    return _free_for_nginx(port, answer, note)


def _published_by_nginx(bound: list[int], port: int, answer: str, container_port: int, note: str) -> Outcome:
    """nginx publishes `container_port` on the host ports `bound`: is `port` one of them, and answering?"""
    if port in bound:
        if accepts(port):
            return ok(f"port {port} ({answer}) is published by this stack's nginx and answers{note}")
        return fail(
            f"port {port} ({answer}) is published by this stack's nginx but nothing answers on "
            f"127.0.0.1:{port}",
            "`docker compose logs nginx`; restart it with `docker compose restart nginx`",
        )
    if not bound:
        return warn(
            f"nginx runs but does not publish its port {container_port}: nothing reaches it on "
            f"{answer}={port}",
            "restore the `ports:` of nginx in compose.yaml (`git diff compose.yaml`), then "
            "`docker compose up -d nginx`",
        )
    return warn(
        f"nginx publishes its port {container_port} on host port {', '.join(map(str, bound))}, "
        f"but the answers say {answer}={port}",
        "restore the `ports:` of nginx in compose.yaml (`git diff compose.yaml`), or record the "
        f"port: `scaffold update --data {answer}={bound[0]}`",
    )


def _free_for_nginx(port: int, answer: str, note: str) -> Outcome:
    """No container publishes `port`: whether another program holds it."""
    state, detail = probe_port(port)
    if state == "in-use":
        holder = listener_process(port) or "another program"
        return fail(
            f"port {port} ({answer}) is in use by {holder}: `docker compose up` cannot publish nginx there "
            '("port is already allocated" / "address already in use")',
            f"see what holds it with `ss -ltnp 'sport = :{port}'`; stop or move that program, then "
            "`docker compose up -d`; or give this stack another port "
            f"(`scaffold update --data {answer}=<port>`)",
        )
    if state == "unknown":
        return skip(f"not checked: cannot tell whether port {port} is free ({detail})")
    extra = f" ({detail})" if detail else ""
    return ok(f"port {port} ({answer}) is free{extra}: nginx can publish it at `docker compose up -d`{note}")


def check_http_port(ctx: Context) -> Outcome:
    if ctx.http_port == 0:
        nginx = ctx.running("nginx")
        if nginx is not None and nginx.host_ports(80):
            return warn(
                f"http_port is 0 (no HTTP port) but nginx publishes its port 80 on host port "
                f"{', '.join(map(str, nginx.host_ports(80)))}",
                "restore the `ports:` of nginx in compose.yaml (`git diff compose.yaml`), then "
                "`docker compose up -d nginx`",
            )
        return ok("no HTTP port is published (http_port 0): certificates come through the DNS challenge")
    return check_port(ctx, answer="http_port", container_port=80)


def check_https_port(ctx: Context) -> Outcome:
    return check_port(ctx, answer="https_port", container_port=443)


CHECKS = (
    Check("network.dns", check_dns),
    Check("network.port-http", check_http_port),
    Check("network.port-https", check_https_port),
)
