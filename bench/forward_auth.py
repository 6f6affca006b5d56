"""What forward auth costs: an app behind authentik's login against the same app without it, in one run.

One generated stack (stand-in images) with one app, `web`, in front of the echo app stand-in, whose
`/open/` path bypasses the login. Both cases therefore go through the same nginx, the same server
block, TLS and upstream; the only difference is the auth subrequest to authentik's embedded outpost
(over the keepalive `authentik` upstream):

  protected   GET /bench on the app host with a session cookie: nginx asks the outpost, then the app
  baseline    GET /open/bench on the same host: nginx proxies to the app directly

The session comes from a real login (the stand-in's outpost, authorize step and login stage). Load
runs from a client container (h2load, HTTP/1.1 over TLS with keepalive): under load (--connections)
for requests/s and latency percentiles, and on one connection, where the p50 difference is what the
auth subrequest adds to a request. Cases are interleaved round by round; figures are medians. The
outpost is the Python stand-in (single-threaded), so absolute figures describe the stand-in, not real
authentik; the nginx side (subrequest, keepalive connections) is the generated configuration.
Afterwards nginx's established connections to authentik are counted: with keepalive, a handful.

    python bench/forward_auth.py [--duration 3] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from _benchutil import CouldNotMeasure, log, machine, median, print_table, run_measurement

from tests.helpers.forwardauth import ECHO_UPSTREAM, Browser, serve_echo_app
from tests.helpers.stack import Stack, docker, running_stack

HOST = "web.example.test"
APPS = {"web": {"host": HOST, "upstream": ECHO_UPSTREAM, "bypass": ["/open/"]}}
CASES = {"protected": "/bench", "baseline": "/open/bench"}


def bring_up(stack: Stack) -> None:
    serve_echo_app(stack, [HOST])
    stack.up()
    from tests.helpers.polling import wait_for

    browser = Browser(stack)
    wait_for(
        lambda: browser.request(f"https://{browser.host(HOST)}/open/ready").status == 200,
        "the app through nginx",
        timeout=240,
    )


def session_cookie(stack: Stack) -> str:
    browser = Browser(stack)
    hops = browser.log_in(HOST)
    if hops[-1][1].status != 200:
        raise CouldNotMeasure(f"the login did not reach the app: {[(u, a.status) for u, a in hops]}")
    return "; ".join(f"{k}={v}" for k, v in browser.cookies[HOST].items())


def h2load(client: str, path: str, cookie: str, connections: int, duration: float) -> dict:
    log_file = "/tmp/h2load-fwdauth.log"
    cmd = [
        "h2load", "--h1", "-c", str(connections), "-t", str(min(2, connections)), "-m", "1",
        "-D", f"{round(duration * 1000)}ms", "--warm-up-time", "500ms", "--log-file", log_file,
        "-H", f"Cookie: {cookie}", f"https://{HOST}{path}",
    ]  # fmt: skip
    result = docker("exec", client, *cmd, timeout=duration + 90, check=False)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", result.stdout)
    if result.returncode != 0 or not rps:
        raise CouldNotMeasure(f"h2load failed for {path}:\n{result.stdout}{result.stderr}")
    lines = docker("exec", client, "cat", log_file).stdout.splitlines()
    durations = sorted(int(p[2]) / 1000 for p in (line.split("\t") for line in lines) if len(p) == 3)
    statuses = {p[1] for p in (line.split("\t") for line in lines) if len(p) == 3}
    docker("exec", client, "rm", "-f", log_file)
    if statuses != {"200"}:
        raise CouldNotMeasure(f"{path} answered {sorted(statuses)}, not only 200 (session lost?)")

    def pick(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))]

    return {"rps": float(rps.group(1)), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "requests": len(durations)}


def nginx_sockets(stack: Stack, ports: set[int], state: str) -> int:
    """nginx's TCP sockets to `ports` in `state` (01 established, 06 TIME_WAIT), from /proc."""
    out = stack.exec("nginx", "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").stdout
    wanted = {f"{port:04X}" for port in ports}
    return sum(
        1
        for line in out.splitlines()
        if len(f := line.split()) > 3 and f[3] == state and f[2].split(":")[-1] in wanted
    )


def measure(args: argparse.Namespace) -> int:
    import docker as docker_sdk

    from tests.standins.images import ensure_standin_images

    images = ensure_standin_images(docker_sdk.from_env(timeout=120))
    with (
        tempfile.TemporaryDirectory(prefix="bench-fwdauth.") as tmp,
        running_stack(Path(tmp), images, {"apps": APPS}) as stack,
    ):
        log("bringing up the stack")
        bring_up(stack)
        cookie = session_cookie(stack)
        client = stack.start_client()
        ip = stack.nginx_address("client")
        docker("exec", client, "sh", "-c", f"echo '{ip} {HOST}' >> /etc/hosts")
        results: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(args.rounds):
            order = list(CASES) if round_ % 2 == 0 else list(reversed(CASES))
            for connections in (args.connections, 1):
                for case in order:
                    run = h2load(client, CASES[case], cookie, connections, args.duration)
                    results.setdefault((case, connections), []).append(run)
                    figures = f"{run['rps']:.0f} req/s, p50 {run['p50_ms']:.2f} ms"
                    log(f"round {round_ + 1} {case} c={connections}: {figures}")
        kept = nginx_sockets(stack, {9443, 9000}, "01")
        waiting = nginx_sockets(stack, {8080}, "06")
        report(results, args, kept)
        print(f"nginx's sockets to the app in TIME_WAIT after the runs: {waiting} (a connection per request)")
    return 0


def report(results: dict[tuple[str, int], list[dict]], args: argparse.Namespace, kept: int) -> None:
    def med(case: str, connections: int, key: str) -> float:
        return median(r[key] for r in results[(case, connections)])

    print(f"\nmachine: {machine()}")
    rows = []
    for connections in (args.connections, 1):
        for case in CASES:
            rows.append([
                case, str(connections), f"{med(case, connections, 'rps'):.0f}",
                f"{med(case, connections, 'p50_ms'):.2f}", f"{med(case, connections, 'p99_ms'):.2f}",
            ])  # fmt: skip
    print_table(["case", "connections", "req/s", "p50 ms", "p99 ms"], rows)
    c = args.connections
    ratio = med("protected", c, "rps") / med("baseline", c, "rps")
    added = med("protected", 1, "p50_ms") - med("baseline", 1, "p50_ms")
    print(f"\nnginx's established connections to authentik after the runs: {kept}")
    print(f"protected / baseline requests/s at {c} connections: {ratio:.2f}x (target >= 0.5x)")
    print(f"p50 added by the auth subrequest, one connection: {added:.2f} ms (target < 1 ms)")
    print(
        f"p99 at {c} connections: protected {med('protected', c, 'p99_ms'):.2f} ms, "
        f"baseline {med('baseline', c, 'p99_ms'):.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    return run_measurement(measure, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
