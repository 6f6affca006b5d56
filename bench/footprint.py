"""Idle memory of the generated nginx + certbot services, against a bare nginx as the floor.

One generated stack (stand-in images) is brought up; once nginx serves the certificate issued by
the ACME test CA and certbot's loop is back to sleep, the memory of the nginx and certbot
containers is read. Then a renewal is forced exactly as an operator would
(`docker compose exec certbot certbot renew --force-renewal ... --deploy-hook ...`), nginx's
watcher reloads it, and the memory is read again. The floor is a bare nginx container of the same
image serving its stock static default config, measured at the same moments.

Three figures per container, all read on the host:
  anon    the container memory cgroup's anonymous memory: memory.stat `total_rss` (cgroup v1) or
          `anon` (v2). Private memory the container adds; no page cache, no shared file pages.
          This is the headline figure.
  pss     sum of Pss (/proc/PID/smaps_rollup) over the container's processes (host PIDs from
          `docker top`): shared library pages split between the processes that map them.
  vmrss   sum of VmRSS (/proc/PID/status) over the same processes: counts every shared page once
          per process (nginx master + each worker), so it overstates the total.
Each figure is the median of several samples taken `--samples` x 0.5 s apart.

It also lists the certbot container's processes at both moments, to show that no Python process
stays resident between renewals (the loop is /bin/sh and `sleep`), and samples certbot's anon
memory while the renewal runs (peak, for information).

Prints the figures, then the ratios last. Exits 1 only when it could not measure.

    python bench/footprint.py [--settle 5] [--samples 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from _benchutil import (
    CouldNotMeasure,
    anon_bytes,
    container_pids,
    container_processes,
    log,
    machine,
    median,
    memory_stat,
    print_table,
    process_memory,
    run_measurement,
    served_certificate_field,
    wait_for_issued_certificate,
)

from tests.helpers.stack import DOMAIN, Stack, docker, running_stack

MIB = 1024 * 1024
DEPLOY_HOOK = "python3 /opt/scaffold/scaffold_certbot.py activate"  # template/certbot/certbot-loop.sh
TARGET_MIB = 30


def measure_container(name: str) -> dict[str, float]:
    stat = memory_stat(name)
    procs = process_memory(name)
    return {
        "anon": anon_bytes(stat) / MIB,
        "pss": procs["pss_kib"] / 1024,
        "vmrss": procs["vmrss_kib"] / 1024,
        "processes": procs["processes"],
    }


def sample(names: dict[str, str], count: int) -> dict[str, dict[str, float]]:
    """Median over `count` samples, 0.5 s apart, of each container's figures."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in names}
    for i in range(count):
        for label, name in names.items():
            runs[label].append(measure_container(name))
        if i < count - 1:
            time.sleep(0.5)
    return {
        label: {key: median(r[key] for r in values) for key in values[0]} for label, values in runs.items()
    }


def nginx_workers(name: str) -> set[int]:
    out = docker("top", name, "-eo", "pid,args").stdout.splitlines()[1:]
    return {int(line.split()[0]) for line in out if "nginx: worker process" in line}


def wait_certbot_idle(name: str, timeout: float = 120) -> str:
    """Until the certbot container runs nothing but its shell loop and `sleep`."""
    deadline = time.monotonic() + timeout
    listing = ""
    while time.monotonic() < deadline:
        listing = container_processes(name)
        commands = [line.split(None, 4)[-1] for line in listing.splitlines()[1:]]
        if commands and all(c.startswith(("/bin/sh ", "sleep ")) for c in commands):
            return listing
        time.sleep(1)
    raise CouldNotMeasure(f"certbot did not go back to sleep within {timeout:.0f}s:\n{listing}")


def python_processes(listing: str) -> list[str]:
    return [line for line in listing.splitlines()[1:] if "python" in line.split(None, 4)[-1]]


class PeakSampler(threading.Thread):
    """Samples a container's anon memory every 50 ms until stopped."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.name_ = name
        self.peak = 0.0
        self.max_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, anon_bytes(memory_stat(self.name_)) / MIB)
                self.max_processes = max(self.max_processes, len(container_pids(self.name_)))
            except (AssertionError, CouldNotMeasure):
                pass
            self._stop_event.wait(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def force_renewal(stack: Stack, nginx: str, certbot: str, nginx_ip: str) -> tuple[float, PeakSampler]:
    """Forced renewal through `docker compose exec`, then wait for nginx's checked reload."""
    workers_before = nginx_workers(nginx)
    serial_before = served_certificate_field(stack, nginx_ip, "serial")
    sampler = PeakSampler(certbot)
    sampler.start()
    started = time.monotonic()
    try:
        stack.compose(
            "exec", "-T", "certbot", "certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew",
            "--cert-name", DOMAIN, "--deploy-hook", DEPLOY_HOOK,
        )  # fmt: skip
    finally:
        sampler.stop()
    renew_seconds = time.monotonic() - started
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = nginx_workers(nginx)
        reloaded = bool(workers) and not workers & workers_before
        if reloaded and served_certificate_field(stack, nginx_ip, "serial") != serial_before:
            return renew_seconds, sampler
        time.sleep(0.5)
    raise CouldNotMeasure("nginx did not reload onto the renewed certificate within 60 s")


def measure(args: argparse.Namespace) -> int:
    import docker as docker_sdk

    from tests.standins.images import ensure_standin_images

    log("stand-in images")
    images = ensure_standin_images(docker_sdk.from_env(timeout=600))
    with (
        tempfile.TemporaryDirectory(prefix="bench-footprint.") as tmp,
        running_stack(Path(tmp), images) as stack,
    ):
        floor = f"{stack.project}-bench-floor"
        try:
            log(f"starting stack {stack.project} and the floor container")
            docker(
                "run", "-d", "--name", floor, "--label", f"com.docker.compose.project={stack.project}",
                images.nginx,
            )  # fmt: skip
            stack.up()
            stack.start_client()
            nginx_ip = wait_for_issued_certificate(stack)
            nginx, certbot = stack.container_id("nginx"), stack.container_id("certbot")
            names = {"nginx": nginx, "certbot": certbot, "floor": floor}
            wait_certbot_idle(certbot)
            log(f"certificate issued and certbot asleep; settling {args.settle:g} s")
            time.sleep(args.settle)
            at_start = sample(names, args.samples)
            procs_start = container_processes(certbot)
            nginx_procs_start = container_processes(nginx)
            floor_procs = container_processes(floor)

            log("forcing a renewal")
            renew_seconds, sampler = force_renewal(stack, nginx, certbot, nginx_ip)
            wait_certbot_idle(certbot)
            log(f"renewed and reloaded; settling {args.settle:g} s")
            time.sleep(args.settle)
            after_renewal = sample(names, args.samples)
            procs_renewal = container_processes(certbot)
            nginx_procs_renewal = container_processes(nginx)
        finally:
            docker("rm", "-f", "-v", floor, check=False)

    report(
        args,
        {"after start": at_start, "after forced renewal": after_renewal},
        {
            "certbot, after start": procs_start,
            "certbot, after forced renewal": procs_renewal,
            "nginx, after start": nginx_procs_start,
            "nginx, after forced renewal": nginx_procs_renewal,
            "floor (bare nginx)": floor_procs,
        },
        renew_seconds,
        sampler,
    )
    return 0


def report(
    args: argparse.Namespace,
    moments: dict[str, dict[str, dict[str, float]]],
    listings: dict[str, str],
    renew_seconds: float,
    sampler: PeakSampler,
) -> None:
    print(f"# bench/footprint.py  {machine()}")
    print(
        f"# settle={args.settle:g}s samples={args.samples} (median); MiB; anon = memory cgroup total_rss/anon"
        " (headline), pss / vmrss = sums over the container's processes"
    )
    print()
    rows = []
    for moment, data in moments.items():
        both = {k: data["nginx"][k] + data["certbot"][k] for k in ("anon", "pss", "vmrss", "processes")}
        for label, values in (
            ("nginx", data["nginx"]),
            ("certbot", data["certbot"]),
            ("nginx + certbot", both),
            ("floor: bare nginx", data["floor"]),
        ):
            rows.append(
                [
                    moment,
                    label,
                    f"{values['anon']:.2f}",
                    f"{values['pss']:.2f}",
                    f"{values['vmrss']:.2f}",
                    f"{values['processes']:.0f}",
                ]
            )
        rows.append(
            [
                moment,
                "ratio (nginx+certbot)/floor",
                *(f"{both[k] / data['floor'][k]:.2f}" for k in ("anon", "pss", "vmrss")),
                "",
            ]
        )
    print_table(["moment", "containers", "anon MiB", "pss MiB", "vmrss MiB", "processes"], rows)
    print()
    print(
        f"forced renewal: {renew_seconds:.1f} s in `certbot renew`; certbot container peak anon "
        f"{sampler.peak:.1f} MiB, up to {sampler.max_processes} processes while it ran"
    )
    print()
    for label, listing in listings.items():
        print(f"processes of {label} (docker top: pid ppid rss-KiB elapsed-s args):")
        for line in listing.splitlines()[1:]:
            print(f"    {' '.join(line.split())}")
    print()

    print("RATIOS")
    lines = []
    for moment, data in moments.items():
        both = {k: data["nginx"][k] + data["certbot"][k] for k in ("anon", "pss", "vmrss")}
        ok = "MET" if both["anon"] < TARGET_MIB else "MISSED"
        lines += [
            (f"(nginx+certbot)/floor, anon, {moment}", f"{both['anon'] / data['floor']['anon']:.2f}", "info"),
            (f"(nginx+certbot)/floor, pss, {moment}", f"{both['pss'] / data['floor']['pss']:.2f}", "info"),
            (
                f"(nginx+certbot)/floor, vmrss, {moment}",
                f"{both['vmrss'] / data['floor']['vmrss']:.2f}",
                "info",
            ),
            (f"nginx+certbot anon MiB, {moment}", f"{both['anon']:.2f}", f"target < {TARGET_MIB}: {ok}"),
            (f"nginx+certbot pss / vmrss MiB, {moment}", f"{both['pss']:.1f} / {both['vmrss']:.1f}", "info"),
        ]
    resident = [
        line
        for key, listing in listings.items()
        if key.startswith("certbot")
        for line in python_processes(listing)
    ]
    lines.append(
        (
            "Python processes resident in certbot between renewals",
            str(len(resident)),
            f"target 0: {'MET' if not resident else 'MISSED'}",
        )
    )
    width = max(len(name) for name, _, _ in lines)
    for name, value, note in lines:
        print(f"  {name:<{width}}  {value:>12}  {note}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--settle", type=float, default=5, help="seconds to wait before measuring (default 5)"
    )
    parser.add_argument("--samples", type=int, default=5, help="samples per measurement, median (default 5)")
    return run_measurement(measure, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
