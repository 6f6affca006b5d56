"""Issue 18: the same stack on Docker Swarm (`target: swarm`), deployed by `scaffold deploy` on a real
single-node swarm with the stand-in images.

One swarm and one stack for the module (the daemon is shared: the swarm lives only as long as this
module runs, see tests/helpers/swarm.py). The tests run in file order: scaling, killing a task and the
rolling update come last, since they change the stack.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509

from tests.helpers.clients import PLACEHOLDER_CN, WSCLIENT, common_name
from tests.helpers.polling import wait_for
from tests.helpers.stack import DOMAIN, docker
from tests.helpers.swarm import SwarmStack, set_env, swarm_stack

# swarm init/leave changes the daemon every other test uses: no other Docker module runs meanwhile.
pytestmark = [pytest.mark.docker, pytest.mark.daemon_exclusive]

SERVICES = {"postgresql": 1, "server": 2, "worker": 1, "nginx": 1, "certbot": 1}

# GET through nginx, a new TLS connection each time, until the stop file appears; counts failures.
LOAD_LOOP = r"""
import json, os, socket, ssl, sys, time
host, sni, prefix, stop, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ok, failed, failures, n, slowest = 0, 0, [], 0, 0.0
started = time.time()
while not os.path.exists(stop) and time.time() - started < limit:
    n += 1
    t0 = time.time()
    try:
        with socket.create_connection((host, 443), timeout=15) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                tls.sendall(f"GET {prefix}/{n} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 200 ") or json.loads(body)["path"] != f"{prefix}/{n}":
            raise ValueError(f"unexpected answer {status!r}")
        ok += 1
    except Exception as exc:
        failed += 1
        if len(failures) < 20:
            failures.append(f"{time.time() - started:.2f}s request {n}: {exc!r}")
    slowest = max(slowest, time.time() - t0)
print(json.dumps({"ok": ok, "failed": failed, "failures": failures, "slowest": slowest,
                  "seconds": time.time() - started}))
"""


@dataclass
class Deployed:
    stack: SwarmStack
    nginx_container: str
    nginx_started_at: str
    nginx_pid: int
    deploy_seconds: float
    issued: x509.Certificate


def served_certificate(port: int) -> x509.Certificate:
    """The certificate nginx serves on the published port, as a client on the node sees it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def nginx_pid(stack: SwarmStack, container: str) -> int:
    out = docker("exec", container, "sh", "-c", "cat /run/nginx.pid 2>/dev/null || cat /var/run/nginx.pid")
    return int(out.stdout.strip())


def context(stack: SwarmStack) -> str:
    tasks = docker("stack", "ps", "--no-trunc", stack.project, check=False).stdout
    return f"{tasks}\n--- nginx\n{stack.logs('nginx')[-2000:]}\n--- certbot\n{stack.logs('certbot')[-2000:]}"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, standin_images) -> Iterator[Deployed]:
    with swarm_stack(tmp_path_factory.mktemp("swarm"), standin_images) as stack:
        started = time.monotonic()
        result = stack.deploy()
        assert "Creating service" in result.stdout + result.stderr, result.stdout + result.stderr
        placeholder = wait_for(
            lambda: common_name(served_certificate(stack.https_port).subject) == PLACEHOLDER_CN,
            "nginx's placeholder certificate on the published port",
            timeout=180,
            context=lambda: context(stack),
        )
        assert placeholder
        container = stack.containers("nginx")[0]
        started_at = json.loads(docker("inspect", container).stdout)[0]["State"]["StartedAt"]
        pid = nginx_pid(stack, container)
        issued = wait_for(
            lambda: (
                (c := served_certificate(stack.https_port)) and common_name(c.subject) != PLACEHOLDER_CN and c
            ),
            "pebble's certificate served by nginx",
            timeout=240,
            context=lambda: context(stack),
        )
        for name, replicas in SERVICES.items():
            wait_for(
                lambda n=name, r=replicas: stack.converged(n, r),
                f"{name} converged with {replicas} healthy task(s)",
                timeout=240,
                interval=2,
                context=lambda: context(stack),
            )
        yield Deployed(stack, container, started_at, pid, time.monotonic() - started, issued)


@pytest.fixture(scope="module")
def stack(deployed: Deployed) -> SwarmStack:
    return deployed.stack


@pytest.fixture(scope="module")
def nginx_ip(stack: SwarmStack) -> str:
    return stack.nginx_address("client")


@pytest.fixture(scope="module")
def client_ip(stack: SwarmStack) -> str:
    return stack.client_address()


def echo(stack: SwarmStack, nginx_ip: str, path: str, *headers: str) -> dict[str, Any]:
    """GET through nginx over HTTPS from the client container; the authentik stand-in's echo."""
    args = ["curl", "-sS", "--max-time", "10", "-k", "--resolve", f"{DOMAIN}:443:{nginx_ip}"]
    for header in headers:
        args += ["-H", header]
    result = stack.client(*args, f"https://{DOMAIN}{path}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no echo from authentik through nginx for {path}: {result.stdout!r}") from None


def trusted_networks(stack: SwarmStack) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    value = stack.env().get("AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS") or ""
    return [ipaddress.ip_network(part) for part in value.split(",") if part]


def run_load(stack: SwarmStack, nginx_ip: str, prefix: str, during: Any) -> dict[str, Any]:
    """Keep requesting through nginx while `during()` runs, then a few seconds more; the loop's verdict."""
    stop = f"/tmp/stop-{prefix.strip('/').replace('/', '-')}"
    stack.client("rm", "-f", stop)
    stack.client("sh", "-c", f"grep -q ' {DOMAIN}$' /etc/hosts || echo '{nginx_ip} {DOMAIN}' >> /etc/hosts")
    subprocess.run(
        ["docker", "exec", "-i", stack.start_client(), "sh", "-c", "cat > /tmp/load.py"],
        input=LOAD_LOOP, text=True, check=True, timeout=30,
    )  # fmt: skip
    command = ["python3", "/tmp/load.py", DOMAIN, DOMAIN, prefix, stop, "600"]
    loop = subprocess.Popen(
        ["docker", "exec", stack.start_client(), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)
        during()
        time.sleep(3)
        stack.client("touch", stop)
        out, err = loop.communicate(timeout=60)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    assert loop.returncode == 0, f"load loop failed: {err}"
    return json.loads(out)


# --------------------------------------------------------------------------- deployment and certificates


def test_every_service_converges_on_its_labelled_node(deployed: Deployed) -> None:
    stack = deployed.stack
    print(f"\n[swarm] deployed and converged in {deployed.deploy_seconds:.1f} s")
    for name, replicas in SERVICES.items():
        assert stack.converged(name, replicas), f"{name}: {stack.tasks(name)}"
    spec = stack.inspect_service("server")["Spec"]
    update = spec["UpdateConfig"]
    assert (update["Parallelism"], update["Order"]) == (1, "start-first"), update
    constraints = {
        name: stack.inspect_service(name)["Spec"]["TaskTemplate"]["Placement"].get("Constraints")
        for name in ("postgresql", "certbot", "nginx")
    }
    assert constraints == {
        "postgresql": ["node.labels.authentik.state == true"],
        "certbot": ["node.labels.authentik.state == true"],
        "nginx": ["node.labels.authentik.edge == true"],
    }, constraints


def test_pebble_certificate_is_served_without_an_nginx_restart(deployed: Deployed) -> None:
    stack, issued = deployed.stack, deployed.issued
    assert common_name(issued.issuer).startswith("Pebble Intermediate CA"), issued.issuer
    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [DOMAIN]
    containers = stack.containers("nginx")
    assert containers == [deployed.nginx_container], "nginx's task was replaced while the certificate came"
    data = json.loads(docker("inspect", containers[0]).stdout)[0]
    assert data["State"]["StartedAt"] == deployed.nginx_started_at, "nginx's container restarted"
    assert nginx_pid(stack, containers[0]) == deployed.nginx_pid, "nginx's master process changed"
    assert "nginx reloaded" in stack.logs("nginx")


# --------------------------------------------------------------------------- trust and client addresses


def test_nginx_takes_its_ports_on_the_node_not_through_the_routing_mesh(stack: SwarmStack) -> None:
    ports = stack.inspect_service("nginx")["Endpoint"]["Ports"]
    assert {(p["TargetPort"], p["PublishedPort"], p["PublishMode"]) for p in ports} == {
        (80, stack.http_port, "host"),
        (443, stack.https_port, "host"),
    }, ports
    # Through the published port a client is seen with the address the node delivers, never one of the
    # ingress network's (the routing mesh's source NAT) nor any overlay's.
    with socket.create_connection(("127.0.0.1", stack.https_port), timeout=5) as raw:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            tls.sendall(f"GET /published HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    seen = json.loads(data.partition(b"\r\n\r\n")[2])
    address = ipaddress.ip_address(seen["client_ip"])
    overlays = [
        ipaddress.ip_network(cfg["Subnet"])
        for net in json.loads(
            docker(
                "network",
                "inspect",
                *docker("network", "ls", "-q", "--filter", "driver=overlay").stdout.split(),
            ).stdout
        )
        for cfg in (net.get("IPAM") or {}).get("Config") or []
    ]
    assert overlays and not any(address in net for net in overlays), (address, overlays)


def test_authentik_sees_the_client_and_trusts_only_nginx(
    stack: SwarmStack, nginx_ip: str, client_ip: str
) -> None:
    seen = echo(stack, nginx_ip, "/api/v3/root/config/?probe=swarm")
    assert seen["client_ip"] == client_ip, f"authentik sees {seen['client_ip']!r}, not the client {client_ip}"
    assert seen["trusted_peer"] is True, f"nginx ({seen['peer']}) is not trusted: {seen}"
    assert seen["scheme"] == "https", seen
    assert not any(ipaddress.ip_address(client_ip) in net for net in trusted_networks(stack))


@pytest.mark.parametrize(
    "spoof",
    [
        ["X-Forwarded-For: 203.0.113.7"],
        ["Forwarded: for=198.51.100.9;proto=http"],
        ["X-Forwarded-Proto: http"],
    ],
    ids=["x-forwarded-for", "forwarded", "x-forwarded-proto"],
)
def test_forged_forwarding_headers_are_ignored(
    stack: SwarmStack, nginx_ip: str, client_ip: str, spoof: list[str]
) -> None:
    seen = echo(stack, nginx_ip, "/spoof", *spoof)
    assert seen["client_ip"] == client_ip, f"{spoof} moved the client address to {seen['client_ip']!r}"
    assert seen["scheme"] == "https", seen
    assert seen["headers"].get("x-forwarded-for") == client_ip, seen["headers"]
    assert "forwarded" not in seen["headers"], seen["headers"]


def test_trusted_cidrs_are_exactly_the_overlay_network(stack: SwarmStack) -> None:
    network = json.loads(docker("network", "inspect", stack.service("proxy")).stdout)[0]
    assert (network["Driver"], network["Scope"]) == ("overlay", "swarm"), network
    subnet = ipaddress.ip_network(network["IPAM"]["Config"][0]["Subnet"])
    assert str(subnet) == stack.env()["PROXY_SUBNET"]
    trusted = trusted_networks(stack)
    assert trusted and all(net.subnet_of(subnet) for net in trusted), f"{trusted} reaches beyond {subnet}"
    nginx = ipaddress.ip_address(stack.nginx_address("proxy"))
    assert any(nginx in net for net in trusted), f"nginx's {nginx} is not trusted: {trusted}"
    # What authentik runs with is what .env says, and detection reads the swarm's network as it is.
    env = stack.inspect_service("server")["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    assert (
        f"AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={stack.env()['AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS']}" in env
    )
    detect = stack.scaffold("detect", "--dry-run", str(stack.dir))
    assert "is up to date" in detect.stdout, detect.stdout


def test_doctor_understands_the_swarm_target(stack: SwarmStack) -> None:
    """Converged services, healthy tasks, trust = the overlay subnet, the certificate served. (The domain
    does not resolve here, so `network.*` fails: see docs/doctor.md; those checks are not asserted.)"""
    result = stack.scaffold("doctor", "--json", str(stack.dir), check=False)
    report = {check["id"]: check for check in json.loads(result.stdout)["checks"]}
    wanted = [
        "stack.swarm-services",
        *(f"stack.service.{name}" for name in SERVICES),
        "stack.env-applied",
        "stack.nginx-config",
        "stack.websocket",
        "trust.cidrs-cover-network",
        "trust.cidrs-not-broad",
        "trust.subnet-matches-env",
        "tls.certificate-names",
        "tls.certificate-loaded",
    ]
    wrong = {key: report[key] for key in wanted if report[key]["status"] != "ok"}
    assert not wrong, json.dumps(wrong, indent=1)
    assert "converged" in report["stack.swarm-services"]["message"]


def test_websocket_echo_through_nginx(stack: SwarmStack, nginx_ip: str) -> None:
    stack.client("sh", "-c", f"grep -q ' {DOMAIN}$' /etc/hosts || echo '{nginx_ip} {DOMAIN}' >> /etc/hosts")
    result = stack.client_script(WSCLIENT.read_text(), f"wss://{DOMAIN}/ws/client/", "--insecure")
    assert result.returncode == 0, f"WebSocket through nginx failed: {result.stdout}{result.stderr}"
    assert json.loads(result.stdout) == {
        "status": 101,
        "text": True,
        "binary": True,
        "pong": True,
        "close": True,
    }


def test_no_secret_value_in_service_or_container_specs(stack: SwarmStack) -> None:
    env = stack.env()
    values = [env["PG_PASS"], env["AUTHENTIK_SECRET_KEY"]]
    assert all(values)
    services = docker("service", "inspect", *(stack.service(name) for name in SERVICES)).stdout
    containers = docker("inspect", *(c for name in SERVICES for c in stack.containers(name))).stdout
    for value in values:
        assert value not in services, "a secret value is in `docker service inspect`"
        assert value not in containers, "a secret value is in `docker inspect` of a task's container"
    secrets = {
        s["SecretName"]
        for s in stack.inspect_service("server")["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    }
    assert len(secrets) == 2 and all(name.startswith(f"{stack.project}_") for name in secrets), secrets


# --------------------------------------------------------------------------- replicas, failures, updates


def test_scaled_to_three_every_replica_serves(stack: SwarmStack, nginx_ip: str) -> None:
    docker("service", "scale", "--detach", f"{stack.service('server')}=3")
    wait_for(lambda: stack.converged("server", 3), "server scaled to 3", timeout=180, interval=2,
             context=lambda: context(stack))  # fmt: skip
    time.sleep(6)  # nginx looks tasks.server up again at most 5 s later
    for n in range(30):
        assert echo(stack, nginx_ip, f"/replica-probe/{n}")["path"] == f"/replica-probe/{n}"

    def served_by_each() -> dict[str, int]:
        logs = {container[:12]: docker("logs", container).stdout for container in stack.containers("server")}
        return {container: text.count('"/replica-probe/') for container, text in logs.items()}

    # The stand-in flushes its access log in batches: wait for all 30 lines, then see who served them.
    wait_for(lambda: sum(served_by_each().values()) == 30, "the 30 probes in the replicas' logs", timeout=15)
    counts = served_by_each()
    assert len(counts) == 3 and all(counts.values()), f"a replica served nothing: {counts}"


def test_killed_replica_fails_no_idempotent_request(stack: SwarmStack, nginx_ip: str) -> None:
    victim = stack.containers("server")[0]
    verdict = run_load(stack, nginx_ip, "/kill-load", lambda: docker("kill", victim))
    print(
        f"\n[swarm] one of 3 server tasks killed under load: {verdict['ok']} ok, "
        f"{verdict['failed']} failed, slowest {verdict['slowest']:.2f} s"
    )
    assert verdict["failed"] == 0, verdict["failures"]
    assert verdict["ok"] > 20, verdict
    wait_for(lambda: stack.converged("server", 3), "Swarm replacing the killed task", timeout=180, interval=2)


def test_rolling_update_of_the_authentik_tag_fails_no_request(stack: SwarmStack, nginx_ip: str) -> None:
    repository = stack.images.authentik.rpartition(":")[0]
    new_tag = f"{repository}:rolling-{stack.project}"
    docker("tag", stack.images.authentik, new_tag)
    stack.extra_tags.append(new_tag)
    # The deploy also keeps the third replica: the stack file reads the count from .env.
    set_env(stack.dir, AUTHENTIK_TAG=new_tag.rpartition(":")[2], AUTHENTIK_SERVER_REPLICAS="3")

    def update() -> None:
        stack.deploy()
        wait_for(
            lambda: (
                stack.converged("server", 3)
                and all(
                    t["Spec"]["ContainerSpec"]["Image"].startswith(new_tag) for t in stack.tasks("server")
                )
            ),
            "the rolling update of server to the new tag",
            timeout=300,
            interval=2,
            context=lambda: context(stack),
        )

    verdict = run_load(stack, nginx_ip, "/update-load", update)
    print(f"\n[swarm] rolling update of 3 server tasks under load: {verdict['ok']} ok, {verdict['failed']} "
          f"failed in {verdict['seconds']:.0f} s, slowest {verdict['slowest']:.2f} s")  # fmt: skip
    assert verdict["failed"] == 0, verdict["failures"]
    assert stack.inspect_service("server")["UpdateStatus"]["State"] == "completed"
    # The second deploy reused the Swarm secrets (same values, same names) and made no others.
    secrets = docker(
        "secret", "ls", "--format", "{{.Name}}", "--filter", f"label=org.scaffold.project={stack.project}"
    )
    assert sorted(secrets.stdout.split()) == sorted(
        s["SecretName"]
        for s in stack.inspect_service("server")["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    ), secrets.stdout
