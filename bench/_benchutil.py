"""Helpers shared by the bench scripts (developer tools, not part of the package).

Each script imports this module first: it puts the repository root on sys.path so that the scripts
can reuse the test harness (tests/helpers/, tests/standins/).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.stack import DOMAIN, Stack, docker  # noqa: E402

PLACEHOLDER_CN = "scaffold placeholder certificate"  # template/certbot/scaffold_certbot.py


class CouldNotMeasure(Exception):
    """The measurement itself failed (as opposed to a figure missing its target)."""


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def machine() -> str:
    server = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip() or "?"
    return (
        f"nproc={os.cpu_count()} arch={platform.machine()} docker={server} python={platform.python_version()}"
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def served_certificate_field(stack: Stack, nginx_ip: str, field: str) -> str:
    """One `openssl x509` field (issuer, serial) of the certificate nginx serves for the domain,
    seen from the client container; empty when nothing answers."""
    script = (
        f"echo | openssl s_client -connect {nginx_ip}:443 -servername {DOMAIN} 2>/dev/null"
        f" | openssl x509 -noout -{field} 2>/dev/null"
    )
    return stack.client("sh", "-c", script, check=False).stdout.strip()


def wait_for_issued_certificate(stack: Stack, timeout: float = 180) -> str:
    """Until nginx serves the certificate issued by the ACME test CA (not the placeholder) and
    authentik answers through it. Returns nginx's address on the client network."""
    deadline = time.monotonic() + timeout
    nginx_ip = ""
    issuer = ""
    while time.monotonic() < deadline:
        try:
            nginx_ip = nginx_ip or stack.nginx_address("client")
        except (AssertionError, KeyError):
            time.sleep(1)
            continue
        issuer = served_certificate_field(stack, nginx_ip, "issuer")
        if issuer and PLACEHOLDER_CN not in issuer:
            code = stack.client(
                "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                "--resolve", f"{DOMAIN}:443:{nginx_ip}", f"https://{DOMAIN}/bench-ready",
                check=False,
            ).stdout.strip()  # fmt: skip
            if code == "200":
                return nginx_ip
        time.sleep(1)
    raise CouldNotMeasure(
        f"nginx did not serve the issued certificate with authentik behind it within {timeout:.0f}s "
        f"(issuer seen: {issuer!r})\n{stack.compose('logs', '--tail', '30', check=False).stdout}"
    )


def container_id(name: str) -> str:
    if re.fullmatch(r"[0-9a-f]{64}", name):
        return name
    return docker("inspect", "-f", "{{.Id}}", name).stdout.strip()


def container_pids(name: str) -> list[int]:
    out = docker("top", name, "-eo", "pid").stdout.split()[1:]
    return [int(pid) for pid in out if pid.isdigit()]


def container_processes(name: str) -> str:
    return docker("top", name, "-eo", "pid,ppid,rss,etimes,args").stdout.rstrip()


def memory_stat(name: str) -> dict[str, int]:
    """memory.stat of the container's memory cgroup (v1 under /sys/fs/cgroup/memory/docker, or v2)."""
    cid = container_id(name)
    candidates = [
        Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.stat"),  # cgroup v1, cgroupfs driver
        Path(f"/sys/fs/cgroup/memory/system.slice/docker-{cid}.scope/memory.stat"),  # v1, systemd
        Path(f"/sys/fs/cgroup/docker/{cid}/memory.stat"),  # v2, cgroupfs
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.stat"),  # v2, systemd
    ]
    for path in candidates:
        if path.is_file():
            text = path.read_text()
            break
    else:  # read it from inside the container instead
        text = docker("exec", name, "cat", "/sys/fs/cgroup/memory/memory.stat", check=False).stdout
        if not text:
            text = docker("exec", name, "cat", "/sys/fs/cgroup/memory.stat").stdout
    stat = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stat[key] = int(value)
    return stat


def anon_bytes(stat: dict[str, int]) -> int:
    """Anonymous memory of the cgroup: v1 `total_rss` (or `rss`), v2 `anon`."""
    for key in ("total_rss", "rss", "anon"):
        if key in stat:
            return stat[key]
    raise CouldNotMeasure(f"no rss/anon in memory.stat: {sorted(stat)}")


def proc_kib(pid: int, path: str, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/{path}").read_text()
    except OSError:
        return 0  # the process ended between `docker top` and the read
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def process_memory(name: str) -> dict[str, int]:
    """Sum over the container's processes (host PIDs from `docker top`) of VmRSS and Pss, in KiB."""
    pids = container_pids(name)
    return {
        "processes": len(pids),
        "vmrss_kib": sum(proc_kib(pid, "status", "VmRSS") for pid in pids),
        "pss_kib": sum(proc_kib(pid, "smaps_rollup", "Pss") for pid in pids),
    }


def container_cpu_ns(cid: str) -> int | None:
    """CPU time used so far by a container's cgroup (v1 cpuacct.usage or v2 cpu.stat), or None."""
    for path in (
        Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpuacct/system.slice/docker-{cid}.scope/cpuacct.usage"),
    ):
        if path.is_file():
            return int(path.read_text())
    for path in (
        Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
    ):
        if path.is_file():
            match = re.search(r"^usage_usec (\d+)", path.read_text(), re.M)
            return int(match.group(1)) * 1000 if match else None
    return None


def process_cpu_ns(pid: int) -> int | None:
    """utime + stime of one host process (e.g. dockerd, a containerd shim), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def dockerd_pid() -> int | None:
    result = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False)
    pids = result.stdout.split()
    return int(pids[0]) if len(pids) == 1 else None


def shim_pid(container: str) -> int | None:
    """The containerd shim that carries a container's stdout/stderr to dockerd's log driver."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", container, check=False).stdout.strip()
    if not pid.isdigit():
        return None
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return ppid if "shim" in Path(f"/proc/{ppid}/comm").read_text() else None
    except OSError:
        return None


def run_timed(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    """Wall time of one subprocess in seconds; raises CouldNotMeasure when it fails."""
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise CouldNotMeasure(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return elapsed


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def run_measurement(measure: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a script's `measure(args)`: exit 1 only when it could not measure, and say how long it took."""
    started = time.monotonic()
    load = os.getloadavg()[0]
    try:
        code = measure(args)
    except CouldNotMeasure as exc:
        print(f"could not measure: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - started:.0f} s (load average at start {load:.2f})")
    return code
