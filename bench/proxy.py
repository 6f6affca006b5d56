"""Proxy overhead of the generated nginx, measured against baselines in the same run.

One generated stack (stand-in images) is brought up. From a client container (the stand-in `client`
image: wrk, h2load, python3) the same load, at the same concurrency, goes to:

  ours        the generated nginx (HTTPS, HTTP/1.1 with keepalive via wrk, HTTP/2 via h2load)
  ours-noka   a second nginx container: the generated config minus the upstream `keepalive` line
  docs        a third nginx container: the nginx example of authentik's reverse-proxy guide,
              verbatim apart from host names and certificate paths (it has `keepalive 10`)
  direct      the authentik stand-in itself, HTTPS on 9443, from a second client container that
              sits on the proxy network only (the stand-in speaks HTTP/1.1 only: h2load uses --h1)

The comparison nginx containers run the same image with the nginx service's environment and ulimits
(from `docker compose config`), so only their configuration files differ.

And, to explain the figures (HTTP/1.1 throughput only; skip with --no-explain):

  ours-http   the generated config as `upstream_scheme: http` renders it (plain HTTP to 9000)
  ours-nolog  ours, with the nginx image's per-request access log (stdout -> Docker's json-file
              log driver) turned off in the image's nginx.conf

For every HTTP/1.1 throughput run the CPU time used per request is read from the cgroups of the
client, nginx and authentik containers and from dockerd + nginx's containerd shim (log shipping).

Cases are interleaved round by round (rotating their order) and each figure is the median over the
rounds, so that drift on a shared machine hits every case alike. Requests/s over HTTP/1.1 come from
wrk. Latency percentiles come from h2load's per-request log (`--h1` for HTTP/1.1), under the same
load and unloaded (one connection, where "added latency" is what the proxy itself adds): wrk 4.1's
own histogram is not usable here, e.g. on one connection it reported a 3.2 ms mean latency for
12393 requests completed in 3.0 s (at most 0.24 ms each), while h2load and a python3 client agreed
on p50 0.2 ms / p99 0.3 ms. HTTP/2 runs count requests (900 per connection) because nginx closes a
connection after 1000 requests (`keepalive_requests`) and h2load does not reconnect HTTP/2 clients.
A WebSocket echo (sequential round trips) goes through ours and direct. The stand-in authentik is a
single-threaded Python asyncio server: "direct" figures describe the stand-in, not real authentik.

Prints the figures, then the ratios last. Exits 1 only when it could not measure.

    python bench/proxy.py [--duration 3] [--latency-duration 2] [--rounds 2] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _benchutil import (
    REPO_ROOT,
    CouldNotMeasure,
    container_cpu_ns,
    container_id,
    dockerd_pid,
    log,
    machine,
    median,
    print_table,
    process_cpu_ns,
    run_measurement,
    shim_pid,
    wait_for_issued_certificate,
)

from tests.helpers.stack import DOMAIN, Stack, docker, running_stack

WSCLIENT = REPO_ROOT / "tests" / "standins" / "wsclient.py"
PATH = "/bench/small"

# authentik's reverse-proxy guide, "Example: nginx" (docs.goauthentik.io/install-config/reverse-proxy,
# website/docs/install-config/reverse-proxy.mdx in goauthentik/authentik). Only the placeholders are
# filled in: the upstream host (`server`), the site name and the certificate paths of this stack.
DOCS_EXAMPLE = """\
# Upstream where your authentik server is hosted.
upstream authentik {
    server server:9443;
    # Improve performance by keeping some connections alive.
    keepalive 10;
}

# Upgrade WebSocket if requested, otherwise use keepalive
map $http_upgrade $connection_upgrade_keepalive {
    default upgrade;
    ''      '';
}

server {
    # HTTP server config
    listen 80;
    listen [::]:80;
    server_name @DOMAIN@;
    # 301 redirect to HTTPS
    return 301 https://$host$request_uri;
}
server {
    # HTTPS server config
    listen 443 ssl http2;
    listen [::]:443 ssl http2;
    server_name @DOMAIN@;

    # TLS certificates
    ssl_certificate /etc/letsencrypt/live/@DOMAIN@/fullchain.pem;
    ssl_certificate_key /etc/letsencrypt/live/@DOMAIN@/privkey.pem;
    add_header Strict-Transport-Security "max-age=63072000" always;

    # Proxy authentik
    location / {
        proxy_pass https://authentik;
        proxy_http_version 1.1;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade_keepalive;
    }
}
"""

# wrk reports through this hook: one JSON line, latencies in microseconds.
WRK_REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

# Sequential WebSocket echo round trips (text frames), using wsclient.py's framing.
WS_RTT = r"""
import json, statistics, sys, time
sys.path.insert(0, "/tmp")
from wsclient import connect, recv_frame, send_frame
url, count, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock, status = connect(url, True, None)
if status != 101:
    print(json.dumps({"error": f"handshake status {status}"})); sys.exit(1)
sock.setsockopt(6, 1, 1)  # TCP_NODELAY, like a browser
payload = b'{"type":"bench","n":0000000}'
samples = []
for i in range(warmup + count):
    started = time.perf_counter_ns()
    send_frame(sock, 0x1, payload)
    opcode, data = recv_frame(sock)
    elapsed = time.perf_counter_ns() - started
    if (opcode, data) != (0x1, payload):
        print(json.dumps({"error": f"bad echo {opcode} {data!r}"})); sys.exit(1)
    if i >= warmup:
        samples.append(elapsed / 1000)
send_frame(sock, 0x8, b"\x03\xe8")
sock.close()
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
print(json.dumps({"count": len(samples), "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99),
                  "mean": statistics.fmean(samples)}))
"""


@dataclass
class Target:
    name: str
    description: str
    client: str  # container that runs the load
    host: str  # host[:port] in the URL (also the SNI)
    ip: str | None = None  # address of DOMAIN for this target (written to the client's /etc/hosts)
    nginx: str | None = None  # the nginx container in the path, for CPU accounting
    h1_only: bool = False  # the stand-in speaks HTTP/1.1 only
    explain: bool = False  # explanatory case: HTTP/1.1 throughput only
    results: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.host}{PATH}"

    @property
    def ws_url(self) -> str:
        return f"wss://{self.host}/ws/client/"

    def add(self, kind: str, result: dict) -> None:
        self.results.setdefault(kind, []).append(result)

    def med(self, kind: str, key: str) -> float:
        return median(r[key] for r in self.results[kind])

    def values(self, kind: str, key: str) -> list[float]:
        return [r[key] for r in self.results[kind]]


class CpuMeter:
    """CPU time of the parts of one request path, read before and after a run."""

    def __init__(self, server: str, client: str, nginx: str | None) -> None:
        self.cgroups = {"client": container_id(client), "authentik": container_id(server)}
        if nginx:
            self.cgroups["nginx"] = container_id(nginx)
        self.processes = {}
        daemon = dockerd_pid()
        if nginx and daemon:
            shim = shim_pid(nginx)
            if shim:
                self.processes["logging"] = (daemon, shim)

    def snapshot(self) -> dict[str, int | None]:
        values: dict[str, int | None] = {name: container_cpu_ns(cid) for name, cid in self.cgroups.items()}
        for name, pids in self.processes.items():
            parts = [process_cpu_ns(pid) for pid in pids]
            values[name] = None if None in parts else sum(p for p in parts if p is not None)
        return values

    @staticmethod
    def per_request_us(before: dict, after: dict, requests: int) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, start in before.items():
            end = after.get(name)
            out[name] = None if start is None or end is None else (end - start) / 1000 / max(1, requests)
        return out


def exec_in(container: str, *cmd: str, timeout: float = 300, check: bool = True):
    return docker("exec", container, *cmd, timeout=timeout, check=check)


def write_into(container: str, path: str, text: str) -> None:
    subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-c", f"cat > {path}"],
        input=text, text=True, check=True, capture_output=True,
    )  # fmt: skip


def point_domain(client: str, ip: str) -> None:
    """Resolve the domain to one nginx in this client (wrk and h2load take the SNI from the URL)."""
    script = (
        f"grep -v ' {DOMAIN}$' /etc/hosts > /tmp/hosts.new; echo '{ip} {DOMAIN}' >> /tmp/hosts.new; "
        "cat /tmp/hosts.new > /etc/hosts"
    )
    exec_in(client, "sh", "-c", script)


def wrk(
    target: Target, connections: int, threads: int, duration: float, meter: CpuMeter | None = None
) -> dict:
    threads = max(1, min(threads, connections))
    before = meter.snapshot() if meter else {}
    out = exec_in(
        target.client, "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
        "--timeout", "10s", "-s", "/tmp/report.lua", target.url,
        timeout=duration + 60,
    ).stdout  # fmt: skip
    after = meter.snapshot() if meter else {}
    match = re.search(r"^WRKJSON (.*)$", out, re.M)
    if not match:
        raise CouldNotMeasure(f"wrk printed no report for {target.name}:\n{out}")
    data = json.loads(match.group(1))
    seconds = data["duration_us"] / 1e6
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    result = {
        "rps": data["requests"] / seconds,
        "requests": data["requests"],
        "errors": errors,
        # Not reported: see the module docstring.
        "wrk_p50_ms": data["p50"] / 1000,
        "wrk_p99_ms": data["p99"] / 1000,
    }
    if meter:
        result["cpu_us"] = CpuMeter.per_request_us(before, after, data["requests"])
    return result


def h2load(
    target: Target,
    connections: int,
    threads: int,
    *,
    h1: bool,
    duration: float | None = None,
    requests_per_connection: int | None = None,
) -> dict:
    """h2load run: req/s and per-request latency percentiles from its log file.

    HTTP/2 runs count requests instead of time: nginx closes a connection after
    `keepalive_requests` (default 1000) and h2load does not reconnect an HTTP/2 client, so a
    timed run would lose its connections one by one. HTTP/1.1 runs are timed (h2load reconnects).
    """
    threads = max(1, min(threads, connections))
    log_file = f"/tmp/h2load-{target.name}.log"
    cmd = ["h2load", "-c", str(connections), "-t", str(threads), "-m", "1", "--log-file", log_file]
    if duration is not None:
        cmd += ["-D", f"{round(duration * 1000)}ms", "--warm-up-time", "500ms"]
    else:
        cmd += ["-n", str(connections * (requests_per_connection or 900))]
    if h1:
        cmd.append("--h1")
    result = exec_in(target.client, *cmd, target.url, timeout=(duration or 30) + 90, check=False)
    out = result.stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", out)
    status = re.search(r"status codes: (\d+) 2xx", out)
    if result.returncode != 0 or not (rps and counts and status):
        raise CouldNotMeasure(f"h2load failed for {target.name} ({result.returncode}):\n{out}{result.stderr}")
    total, done, succeeded = (int(counts.group(i)) for i in (1, 2, 3))
    if duration is None and done < total:
        raise CouldNotMeasure(f"h2load finished {done} of {total} requests for {target.name}:\n{out}")
    durations = []
    for line in exec_in(target.client, "cat", log_file).stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == "200":
            durations.append(int(parts[2]) / 1000)
    exec_in(target.client, "rm", "-f", log_file)
    if not durations:
        raise CouldNotMeasure(f"h2load logged no successful request for {target.name}:\n{out}")
    durations.sort()

    def pick(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))]

    protocol = re.search(r"Application protocol: (\S+)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": done,
        "errors": done - int(status.group(1)) + (done - succeeded),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "p999_ms": pick(0.999),
        "max_ms": durations[-1],
        "protocol": protocol.group(1) if protocol else "?",
    }


def websocket_rtt(target: Target, count: int) -> dict:
    result = subprocess.run(
        ["docker", "exec", "-i", target.client, "python3", "-", target.ws_url, str(count), "100"],
        input=WS_RTT, text=True, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        data = {"error": result.stdout + result.stderr}
    if "error" in data:
        raise CouldNotMeasure(f"WebSocket round trips via {target.name} failed: {data['error']}")
    return {k: (v / 1000 if k != "count" else v) for k, v in data.items()}  # us -> ms


def variant_confs(stack: Stack, work: Path) -> dict[str, Path]:
    """conf.d folders of the comparison nginx containers (and nginx.conf of `ours-nolog`)."""
    ours = stack.dir / "nginx" / "conf.d"
    text = (ours / "authentik.conf").read_text()
    out: dict[str, Path] = {}

    noka = re.sub(r"(?m)^\s*keepalive\s+\d+;\n", "", text)
    if noka.count("\n") != text.count("\n") - 1:
        raise CouldNotMeasure("expected exactly one `keepalive N;` line in the generated authentik.conf")
    # What `upstream_scheme: http` renders (template/nginx/conf.d/authentik.conf.jinja).
    http = text.replace("server server:9443;", "server server:9000;").replace(
        "proxy_pass https://authentik;", "proxy_pass http://authentik;"
    )
    if http.count("9000") != 1 or "proxy_pass http://authentik;" not in http:
        raise CouldNotMeasure("could not derive the upstream_scheme=http variant of authentik.conf")
    for name, conf in (("ours-noka", noka), ("ours-http", http)):
        folder = work / f"{name}-conf.d"
        shutil.copytree(ours, folder)
        (folder / "authentik.conf").write_text(conf)
        out[name] = folder
    docs = work / "docs-conf.d"
    docs.mkdir()
    (docs / "authentik.conf").write_text(DOCS_EXAMPLE.replace("@DOMAIN@", DOMAIN))
    out["docs"] = docs

    image_conf = docker(
        "run", "--rm", "--entrypoint", "cat", stack.images.nginx, "/etc/nginx/nginx.conf"
    ).stdout
    nolog = re.sub(r"(?m)^(\s*)access_log\s+[^;]+;", r"\1access_log off;", image_conf)
    if nolog == image_conf:
        raise CouldNotMeasure("no access_log line in the nginx image's nginx.conf")
    (work / "nolog-nginx.conf").write_text(nolog)
    out["nolog-nginx.conf"] = work / "nolog-nginx.conf"
    return out


def nginx_service_options(stack: Stack) -> list[str]:
    """`docker run` options that mirror the generated nginx service's environment and ulimits, so
    that the comparison containers differ from it by their configuration files only."""
    service = json.loads(stack.compose("config", "--format", "json").stdout)["services"]["nginx"]
    options: list[str] = []
    for key, value in (service.get("environment") or {}).items():
        options += ["-e", f"{key}={value}"]
    for name, limit in (service.get("ulimits") or {}).items():
        if isinstance(limit, dict):
            options += ["--ulimit", f"{name}={limit.get('soft')}:{limit.get('hard')}"]
        else:
            options += ["--ulimit", f"{name}={limit}"]
    return options


def start_nginx(stack: Stack, name: str, volumes: list[str], options: list[str]) -> str:
    """Another nginx (the stand-in nginx image) on the proxy network (to reach `server`) and on the
    client network; returns its address on the client network."""
    args = ["run", "-d", "--name", name, "--network", stack.network_name("proxy")]
    args += ["--label", f"com.docker.compose.project={stack.project}", *options]
    for volume in volumes:
        args += ["-v", volume]
    docker(*args, stack.images.nginx)
    docker("network", "connect", stack.network_name("client"), name)
    data = json.loads(docker("inspect", name).stdout)[0]
    return data["NetworkSettings"]["Networks"][stack.network_name("client")]["IPAddress"]


def wait_serving(stack: Stack, name: str, ip: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    code = ""
    while time.monotonic() < deadline:
        code = stack.client(
            "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
            "--resolve", f"{DOMAIN}:443:{ip}", f"https://{DOMAIN}/bench-ready", check=False,
        ).stdout.strip()  # fmt: skip
        if code == "200":
            return
        time.sleep(0.5)
    logs = docker("logs", "--tail", "30", name, check=False)
    raise CouldNotMeasure(f"{name} does not proxy to authentik (last status {code!r}):\n{logs.stderr}")


def ours_volumes(stack: Stack, conf_d: Path, nginx_conf: Path | None = None) -> list[str]:
    """The nginx service's volumes from compose.yaml, with another conf.d (the ACME webroot volume
    is left out: port 80 is not measured)."""
    project_nginx = stack.dir / "nginx"
    entry = "/docker-entrypoint.d"
    scripts = ("40-scaffold-wait-for-certificate.sh", "50-scaffold-reload-on-renewal.sh")
    volumes = [
        f"{conf_d}:/etc/nginx/conf.d:ro",
        f"{project_nginx / 'snippets'}:/etc/nginx/snippets:ro",
        f"{project_nginx / 'custom'}:/etc/nginx/custom:ro",
        *(f"{project_nginx / 'entrypoint.d' / s}:{entry}/{s}:ro" for s in scripts),
        f"{stack.dir / 'letsencrypt'}:/etc/letsencrypt:ro",
    ]
    if nginx_conf:
        volumes.append(f"{nginx_conf}:/etc/nginx/nginx.conf:ro")
    return volumes


def measure(args: argparse.Namespace) -> int:
    import docker as docker_sdk

    from tests.standins.images import ensure_standin_images

    log("stand-in images")
    images = ensure_standin_images(docker_sdk.from_env(timeout=600))
    extra: list[str] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-proxy.") as tmp, running_stack(Path(tmp), images) as stack:
        try:
            log(f"starting stack {stack.project}")
            stack.up()
            client = stack.start_client()
            ours_ip = wait_for_issued_certificate(stack)
            log("certificate issued; starting the comparison containers")
            confs = variant_confs(stack, Path(tmp))
            p = stack.project
            volumes = {
                f"{p}-bench-noka": ours_volumes(stack, confs["ours-noka"]),
                f"{p}-bench-docs": [
                    f"{confs['docs']}:/etc/nginx/conf.d:ro",
                    f"{stack.dir}/letsencrypt:/etc/letsencrypt:ro",
                ],
            }
            if args.explain:
                volumes[f"{p}-bench-http"] = ours_volumes(stack, confs["ours-http"])
                volumes[f"{p}-bench-nolog"] = ours_volumes(
                    stack, stack.dir / "nginx" / "conf.d", confs["nolog-nginx.conf"]
                )
            ips = {}
            options = nginx_service_options(stack)
            for name, vols in volumes.items():
                extra.append(name)
                ips[name] = start_nginx(stack, name, vols, options)
            direct_client = f"{p}-bench-direct-client"
            extra.append(direct_client)
            docker(
                "run", "-d", "--name", direct_client, "--network", stack.network_name("proxy"),
                "--label", f"com.docker.compose.project={p}",
                "--entrypoint", "sleep", images.client, "infinity",
            )  # fmt: skip
            for name, ip in ips.items():
                wait_serving(stack, name, ip)
            for container in (client, direct_client):
                write_into(container, "/tmp/report.lua", WRK_REPORT)
                write_into(container, "/tmp/wsclient.py", WSCLIENT.read_text())

            ours_nginx = stack.container_id("nginx")
            targets = [
                Target("ours", "generated nginx (keepalive 32)", client, DOMAIN, ours_ip, ours_nginx),
                Target(
                    "ours-noka", "generated nginx minus the upstream keepalive line", client, DOMAIN,
                    ips[f"{p}-bench-noka"], f"{p}-bench-noka",
                ),
                Target(
                    "docs", "authentik docs example (upstream keepalive 10)", client, DOMAIN,
                    ips[f"{p}-bench-docs"], f"{p}-bench-docs",
                ),
                Target("direct", "authentik stand-in, :9443", direct_client, "server:9443", h1_only=True),
            ]  # fmt: skip
            if args.explain:
                targets += [
                    Target(
                        "ours-http", "generated nginx, upstream_scheme=http (:9000)", client, DOMAIN,
                        ips[f"{p}-bench-http"], f"{p}-bench-http", explain=True,
                    ),
                    Target(
                        "ours-nolog", "generated nginx, image's access log off", client, DOMAIN,
                        ips[f"{p}-bench-nolog"], f"{p}-bench-nolog", explain=True,
                    ),
                ]  # fmt: skip
            server = stack.container_id("server")
            meters = {t.name: CpuMeter(server, t.client, t.nginx) for t in targets}
            run_rounds(targets, meters, args)
            ws = run_websocket(targets, args)
        finally:
            for name in extra:
                docker("rm", "-f", "-v", name, check=False)
    report(targets, ws, args, load_before, os.getloadavg())
    return 0


def run_rounds(targets: list[Target], meters: dict[str, CpuMeter], args: argparse.Namespace) -> None:
    # Warm-up: TLS sessions, upstream keepalive pools, page cache; not counted.
    for target in targets:
        if target.ip:
            point_domain(target.client, target.ip)
        wrk(target, args.connections, args.threads, 1)
    c, threads = args.connections, args.threads
    for round_no in range(args.rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            log(f"round {round_no + 1}/{args.rounds}: {target.name}")
            if target.ip:
                point_domain(target.client, target.ip)
            target.add("h1", wrk(target, c, threads, args.duration, meters[target.name]))
            if target.explain:
                continue
            target.add("h1-lat", h2load(target, c, threads, h1=True, duration=args.latency_duration))
            target.add("c1", h2load(target, 1, 1, h1=True, duration=args.latency_duration))
            if not target.h1_only:
                target.add("h2", h2load(target, c, threads, h1=False, requests_per_connection=900))


def run_websocket(targets: list[Target], args: argparse.Namespace) -> dict[str, list[dict]]:
    by_name = {t.name: t for t in targets}
    results: dict[str, list[dict]] = {"ours": [], "direct": []}
    for round_no in range(args.rounds):
        for name in ("ours", "direct") if round_no % 2 == 0 else ("direct", "ours"):
            target = by_name[name]
            if target.ip:
                point_domain(target.client, target.ip)
            log(f"WebSocket round {round_no + 1}/{args.rounds}: {name}")
            results[name].append(websocket_rtt(target, args.ws_roundtrips))
    return results


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def cpu_median(target: Target, part: str) -> float | None:
    values = [r["cpu_us"].get(part) for r in target.results["h1"]]
    if not values or any(v is None for v in values):
        return None
    return median(v for v in values if v is not None)


def report(
    targets: list[Target],
    ws: dict[str, list[dict]],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    by = {t.name: t for t in targets}
    main = [t for t in targets if not t.explain]
    c = args.connections
    print(f"# bench/proxy.py  {machine()}")
    print(
        f"# c={c} threads={args.threads} duration={args.duration:g}s "
        f"latency-duration={args.latency_duration:g}s rounds={args.rounds} (median over rounds) path={PATH}; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
    )
    print()

    def per_round(t: Target, kind: str) -> str:
        return "/".join(fmt(r["rps"], 0) for r in t.results[kind])

    print(f"HTTP/1.1 keepalive, {c} connections (req/s: wrk; latency: h2load --h1, same load)")
    rows = []
    for t in targets:
        row = [t.name, fmt(t.med("h1", "rps"), 0), per_round(t, "h1")]
        if t.explain:
            row += ["-"] * 5
        else:
            row += [fmt(t.med("h1-lat", "rps"), 0)]
            row += [fmt(t.med("h1-lat", k), 2) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")]
        rows.append(row)
    print_table(
        ["case", "wrk req/s", "per round", "h2load req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms"], rows
    )
    print()
    print("HTTP/1.1, one connection: unloaded latency (h2load --h1 -c 1)")
    rows = [
        [t.name, fmt(t.med("c1", "rps"), 0)]
        + [fmt(t.med("c1", k), 3) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
        for t in main
    ]
    print_table(["case", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"], rows)
    print()
    print(f"HTTP/2, {c} connections x 1 stream, {900 * c} requests (h2load)")
    rows = [
        [t.name, fmt(t.med("h2", "rps"), 0), per_round(t, "h2"), t.results["h2"][0]["protocol"]]
        + [fmt(t.med("h2", k), 2) for k in ("p50_ms", "p99_ms", "p999_ms")]
        for t in main
        if "h2" in t.results
    ]
    print_table(["case", "req/s", "per round", "protocol", "p50 ms", "p99 ms", "p99.9 ms"], rows)
    print()
    for t in targets:
        print(f"  {t.name:<10} {t.description}; {t.url}")
    print()
    parts = ("client", "nginx", "authentik", "logging")
    cpu_rows = []
    for t in targets:
        values = {part: cpu_median(t, part) for part in parts}
        known = [v for v in values.values() if v is not None]
        cpu_rows.append([t.name, *(fmt(values[p], 1) for p in parts), fmt(sum(known), 1)])
    print("CPU microseconds per request in the wrk runs (container cgroups; logging = dockerd + the nginx")
    print("container's containerd shim, which carry nginx's stdout access log to Docker's json-file log;")
    print("dockerd also serves whatever else runs on the machine)")
    print_table(["case", *parts, "total"], cpu_rows)
    print()
    ws_rows = [
        [name, str(runs[0]["count"])]
        + [fmt(median(r[k] for r in runs), 3) for k in ("p50", "p90", "p99", "mean")]
        for name, runs in ws.items()
    ]
    print("WebSocket: sequential echo round trips of a 28-byte text frame (python3 client, TCP_NODELAY)")
    print_table(["case", "round trips", "p50 ms", "p90 ms", "p99 ms", "mean ms"], ws_rows)
    print()

    errors = sum(r["errors"] for t in targets for rs in t.results.values() for r in rs)
    requests = sum(r["requests"] for t in targets for rs in t.results.values() for r in rs)
    ours, direct, noka, docs = by["ours"], by["direct"], by["ours-noka"], by["docs"]

    def ratio(a: Target, b: Target, kind: str, b_kind: str | None = None) -> float:
        return a.med(kind, "rps") / b.med(b_kind or kind, "rps")

    def added(kind: str, key: str, digits: int = 3) -> str:
        return f"{ours.med(kind, key) - direct.med(kind, key):+.{digits}f} ms"

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    rps_ratio = ratio(ours, direct, "h1")
    added_c1 = ours.med("c1", "p99_ms") - direct.med("c1", "p99_ms")
    ka = ratio(ours, noka, "h1")
    ka_apart = min(ours.values("h1", "rps")) > max(noka.values("h1", "rps"))
    ws_p50 = median(r["p50"] for r in ws["ours"]) - median(r["p50"] for r in ws["direct"])
    ws_p99 = median(r["p99"] for r in ws["ours"]) - median(r["p99"] for r in ws["direct"])
    lines = [
        (f"ours/direct req/s, HTTP/1.1 keepalive, c={c} (wrk)", fmt(rps_ratio),
         f"target >= 0.70: {verdict(rps_ratio >= 0.7)}"),
        (f"ours/direct req/s, HTTP/1.1 keepalive, c={c} (h2load --h1)", fmt(ratio(ours, direct, "h1-lat")),
         "cross-check"),
        ("p99 added latency, unloaded (c=1), ours - direct", f"{added_c1:+.3f} ms",
         f"target < 1 ms: {verdict(added_c1 < 1)}"),
        ("p50 added latency, unloaded (c=1), ours - direct", added("c1", "p50_ms"), "info"),
        (f"p99 added latency under load (c={c}), ours - direct", added("h1-lat", "p99_ms", 2), "info"),
        ("ours keepalive / ours without, req/s HTTP/1.1", fmt(ka),
         f"target > 1, every round apart: {verdict(ka > 1 and ka_apart)}"),
        ("ours keepalive / ours without, req/s HTTP/2", fmt(ratio(ours, noka, "h2")), "info"),
        ("ours / authentik-docs example, req/s HTTP/1.1", fmt(ratio(ours, docs, "h1")), "info"),
        ("ours / authentik-docs example, req/s HTTP/2", fmt(ratio(ours, docs, "h2")), "info"),
        ("ours HTTP/2 / direct HTTP/1.1, req/s (h2load)", fmt(ratio(ours, direct, "h2", "h1-lat")), "info"),
        ("WebSocket p50 added latency, ours - direct", f"{ws_p50:+.3f} ms", "info"),
        ("WebSocket p99 added latency, ours - direct", f"{ws_p99:+.3f} ms", "info"),
    ]  # fmt: skip
    if args.explain:
        for name in ("ours-http", "ours-nolog"):
            lines.append((f"{name} / ours, req/s HTTP/1.1 (wrk)", fmt(ratio(by[name], ours, "h1")), "info"))
    nginx_cpu, ak_cpu = cpu_median(ours, "nginx"), cpu_median(direct, "authentik")
    if nginx_cpu is not None and ak_cpu is not None:
        lines.append(
            ("nginx CPU (ours) / stand-in CPU (direct), per request", fmt(nginx_cpu / ak_cpu), "info")
        )
    lines.append(("failed or non-2xx requests", f"{errors} of {requests}", "must be 0"))
    print("RATIOS (median over rounds)")
    width = max(len(name) for name, _, _ in lines)
    for name, value, note in lines:
        print(f"  {name:<{width}}  {value:>12}  {note}")
    if errors > requests * 0.001:
        raise CouldNotMeasure(f"{errors} failed or non-2xx requests: the figures above are not valid")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3, help="seconds per throughput run (default 3)")
    parser.add_argument(
        "--latency-duration",
        type=float,
        default=2,
        help="seconds per h2load --h1 latency run, loaded and unloaded (default 2)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per case (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk/h2load threads (default 2)")
    parser.add_argument(
        "--ws-roundtrips", type=int, default=2000, help="WebSocket echoes per run (default 2000)"
    )
    parser.add_argument(
        "--no-explain", dest="explain", action="store_false", help="skip the ours-http and ours-nolog cases"
    )
    return run_measurement(measure, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
