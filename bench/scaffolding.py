"""Cost of the `scaffold` CLI over plain copier, on a throwaway tagged copy of this template.

The working tree (uncommitted changes included) is copied into a new git repository tagged v1.0.0
(tests/helpers/templaterepo.py `make_template_repo`). Every command then runs through its real console entry
point as a subprocess (the `scaffold` and `copier` scripts next to this Python, not pyenv shims),
each in a fresh temporary destination. Variants are interleaved run by run (order rotated) after
one untimed warm-up run each; each figure is the median of N runs, each ratio the median over rounds
of the ratio within a round (the two commands ran back to back, so load drifting between rounds
cancels out), with its quartiles, and beside it the same for CPU time (user + system time of the
command and every process it waited for), which moves least with the load of a shared machine:

  scaffold new            scaffold new DEST --template TPL --defaults -d ...
  copier copy             copier copy --trust --defaults -d ... TPL DEST          (with the hook task)
  copier copy -T          the same with --skip-tasks
  copier copy, empty task the same with the task replaced by `python -P -c pass` (what copier and a
                          bare Python start cost before the hook does anything: the floor)
  copier copy -T, no compile cache
                          copier copy -T of the template with its Jinja extension's compile cache
                          taken out (scaffold/copier_extension.py `remember_compiled_templates`)
  scaffold update         scaffold update DEST, no template change (DEST: a copy of a project made
                          by `scaffold new`, committed)
  copier update           copier update --trust --defaults --skip-answered --conflict inline DEST
                          (with the hook task: the same end state as scaffold update, whose own
                          detection step replaces the task; this is the fair comparison)
  copier update -T        the same with --skip-tasks (copier's bare update, for information)
  copier update -T, no compile cache
                          the same of a project of the template without the compile cache
  scaffold hook alone     python -P -m scaffold.hook, what copier's task runs, from a fresh copy of the
                          template as copier's clone is (information)
  scaffold --help         vs copier --help
  import ...              python -X importtime -c "import scaffold.cli" (and copier, docker), cumulative

Bytecode: every command runs with a private PYTHONPYCACHEPREFIX (filled by the warm-up runs), as on
a machine that caches bytecode, even where PYTHONDONTWRITEBYTECODE is set in the environment.

Prints the figures, then the ratios last. Exits 1 only when it could not measure.

    python bench/scaffolding.py [--runs 9] [--update-runs 5] [--help-runs 15]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _benchutil import (
    REPO_ROOT,
    CouldNotMeasure,
    log,
    machine,
    median,
    print_table,
    run_measured,
    run_measurement,
    run_timed,
    spread,
)

from tests.helpers.templaterepo import edit, make_template_repo, release

DATA = ["-d", "domain=sso.example.test", "-d", "acme_email=admin@example.test"]


def entry_point(name: str) -> Path:
    """The console script installed next to this interpreter (a pyenv shim would add ~100 ms)."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    if not found:
        raise CouldNotMeasure(f"no `{name}` entry point next to {sys.executable} or on PATH")
    return Path(found)


def scaffold_command(env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The `scaffold` entry point when it runs this checkout; else `python -P -m scaffold` with this
    checkout on PYTHONPATH (an editable install may point at another working tree)."""
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import scaffold; print(scaffold.__file__)"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if found.returncode == 0 and Path(found.stdout.strip()).resolve().parent == REPO_ROOT / "scaffold":
        return [str(entry_point("scaffold"))], {}
    return [sys.executable, "-P", "-m", "scaffold"], {"PYTHONPATH": str(REPO_ROOT)}


def import_time_us(module: str, env: dict[str, str]) -> tuple[int, list[tuple[int, str]]]:
    """Cumulative import time of `module` and its slowest direct imports, in us."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if result.returncode != 0:
        raise CouldNotMeasure(f"import {module} failed:\n{result.stderr[-2000:]}")
    # importtime prints a module after everything it imported, indented two spaces per level.
    pending: list[tuple[int, int, str]] = []  # (indent, cumulative, name) since the last top-level line
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        cumulative, indent, name = int(match.group(1)), len(match.group(2)), match.group(3)
        if indent == 1 and name == module:
            children = sorted(((c, n) for i, c, n in pending if i == 3), reverse=True)
            return cumulative, children[:5]
        pending = [] if indent == 1 else [*pending, (indent, cumulative, name)]
    raise CouldNotMeasure(f"no importtime line for {module}")


def top_level_imports(cmd: list[str], env: dict[str, str], cwd: Path) -> list[tuple[int, str]]:
    """Cumulative time (us) of each top-level import made while running `cmd` under -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
    )
    if result.returncode != 0:
        raise CouldNotMeasure(f"{' '.join(cmd)} failed under -X importtime:\n{result.stderr[-2000:]}")
    tops = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)", line)
        if match:
            tops.append((int(match.group(1)), match.group(2)))
    return sorted(tops, reverse=True)


@dataclass
class Run:
    cmd: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Timings:
    """One command's timed runs, in round order (round i of every command of a group ran together)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def measure(args: argparse.Namespace) -> int:
    copier = str(entry_point("copier"))
    results: dict[str, Timings] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaffolding.") as tmp_name:
        tmp = Path(tmp_name)
        # A user's machine caches bytecode; this environment may forbid writing it
        # (PYTHONDONTWRITEBYTECODE). A private cache prefix gives every variant the usual caching,
        # filled by the warm-up runs, and writes nothing next to the sources.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "COPIER_ANSWERS_FILE")
        }
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        scaffold_cmd, scaffold_env = scaffold_command(env)
        scaffold = " ".join(scaffold_cmd)
        template = make_template_repo(tmp / "template")
        tpl = str(template)
        # The same template whose task only starts Python: copier's own cost of running a task.
        empty_task = tmp / "template-empty-task"
        shutil.copytree(template, empty_task, symlinks=True)
        edit(empty_task, "copier.yml", "-P -m scaffold.hook", "-P -c pass")
        release(empty_task, "v1.0.1")
        # The same template compiling every template string on every render, as copier does alone.
        uncached = tmp / "template-no-compile-cache"
        shutil.copytree(template, uncached, symlinks=True)
        edit(
            uncached, "scaffold/copier_extension.py", "        remember_compiled_templates(environment)\n", ""
        )
        release(uncached, "v1.0.1")
        counter = iter(range(1_000_000))

        def fresh(prefix: str) -> Path:
            return tmp / "runs" / f"{prefix}-{next(counter)}"

        def copy_of(source: Path) -> Path:
            dest = fresh(source.name)
            shutil.copytree(source, dest, symlinks=True)
            return dest

        log("seed projects: one made by scaffold new (for updates), one by copier copy -T (for the hook)")
        seed, bare, seed_uncached = tmp / "seed", tmp / "bare", tmp / "seed-no-compile-cache"
        for destination, source in ((seed, tpl), (seed_uncached, str(uncached))):
            run_timed(
                [*scaffold_cmd, "new", str(destination), "--template", source, "--defaults", *DATA],
                env={**env, **scaffold_env},
            )
        run_timed([copier, "copy", "--trust", "--defaults", "--skip-tasks", *DATA, tpl, str(bare)], env=env)
        copy_cmd = [copier, "copy", "--trust", "--defaults", *DATA]
        update_cmd = [copier, "update", "--trust", "--defaults", "--skip-answered", "--conflict", "inline"]
        # What copier's task runs (copier.yml `_tasks`), in a project without .env yet.
        hook = [sys.executable, "-P", "-m", "scaffold.hook"]
        groups: list[tuple[dict[str, Callable[[], Run]], int]] = [
            (
                {
                    "scaffold new": lambda: Run(
                        [*scaffold_cmd, "new", str(fresh("new")), "--template", tpl, "--defaults", *DATA],
                        env=scaffold_env,
                    ),
                    "copier copy": lambda: Run([*copy_cmd, tpl, str(fresh("cp"))]),
                    "copier copy -T": lambda: Run([*copy_cmd, "--skip-tasks", tpl, str(fresh("cpt"))]),
                    "copier copy -T, no compile cache": lambda: Run(
                        [*copy_cmd, "--skip-tasks", str(uncached), str(fresh("cpu"))]
                    ),
                    "copier copy, empty task": lambda: Run([*copy_cmd, str(empty_task), str(fresh("cpe"))]),
                    # A fresh template copy each time, like copier's clone: no cached bytecode for it.
                    "scaffold hook alone": lambda: Run(
                        hook, cwd=copy_of(bare), env={"PYTHONPATH": str(copy_of(template))}
                    ),
                },
                args.runs,
            ),
            (
                {
                    "scaffold update": lambda: Run(
                        [*scaffold_cmd, "update", str(copy_of(seed))], env=scaffold_env
                    ),
                    "copier update": lambda: Run([*update_cmd, str(copy_of(seed))]),
                    "copier update -T": lambda: Run([*update_cmd, "--skip-tasks", str(copy_of(seed))]),
                    "copier update -T, no compile cache": lambda: Run(
                        [*update_cmd, "--skip-tasks", str(copy_of(seed_uncached))]
                    ),
                },
                args.update_runs,
            ),
            (
                {
                    "scaffold --help": lambda: Run([*scaffold_cmd, "--help"], env=scaffold_env),
                    "copier --help": lambda: Run([copier, "--help"]),
                },
                args.help_runs,
            ),
        ]
        for group, runs in groups:
            names = list(group)
            log(f"warm-up: {', '.join(names)}")
            for name in names:
                run = group[name]()
                run_timed(run.cmd, env={**env, **run.env}, cwd=run.cwd or tmp)
            for i in range(runs):
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    run = group[name]()  # preparing the destination is not timed
                    os.sync()  # nor writing back what the preparation left dirty
                    wall, cpu = run_measured(run.cmd, env={**env, **run.env}, cwd=run.cwd or tmp)
                    timings = results.setdefault(name, Timings())
                    timings.wall.append(wall)
                    timings.cpu.append(cpu)
            log(f"measured {', '.join(names)} x {runs}")
            shutil.rmtree(tmp / "runs", ignore_errors=True)

        imports = {
            module: [import_time_us(module, {**env, **scaffold_env}) for _ in range(5)]
            for module in ("scaffold.cli", "copier", "docker")
        }
        hook_imports = top_level_imports(
            ["-P", "-m", "scaffold.hook"], {**env, "PYTHONPATH": str(copy_of(template))}, copy_of(bare)
        )
    report(args, results, imports, hook_imports, scaffold, copier)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[str, Timings],
    imports: dict[str, list[tuple[int, list[tuple[int, str]]]]],
    hook_imports: list[tuple[int, str]],
    scaffold: str,
    copier: str,
) -> None:
    print(f"# bench/scaffolding.py  {machine()}  load average {os.getloadavg()[0]:.2f} at the end")
    print(
        f"# runs={args.runs} update-runs={args.update_runs} help-runs={args.help_runs} (interleaved, order "
        f"rotated, after one warm-up run each); scaffold={scaffold} copier={copier}; bytecode cached in a "
        "private PYTHONPYCACHEPREFIX"
    )
    print()
    rows = []
    for name, timings in results.items():
        low, high = spread(timings.wall)
        cpu_low, cpu_high = spread(timings.cpu)
        rows.append(
            [
                name,
                f"{median(timings.wall) * 1000:.0f}",
                f"{low * 1000:.0f}-{high * 1000:.0f}",
                f"{min(timings.wall) * 1000:.0f}",
                f"{median(timings.cpu) * 1000:.0f}",
                f"{cpu_low * 1000:.0f}-{cpu_high * 1000:.0f}",
                str(len(timings.wall)),
            ]
        )
    headers = ["command", "median ms", "quartiles ms", "min ms", "CPU median ms", "CPU quartiles", "runs"]
    print_table(headers, rows)
    print(
        "  scaffold hook alone = `python -P -m scaffold.hook` with PYTHONPATH=<fresh copy of the template>,"
    )
    print("  in a fresh `copier copy --skip-tasks` result (what copier's task runs; it creates .env)")
    print("  CPU = user + system time of the command and every process it waited for (git, the task)")
    print()
    cumulative = {module: median(total for total, _ in runs) / 1000 for module, runs in imports.items()}
    for module, runs in imports.items():
        children = ", ".join(f"{name} {c / 1000:.1f}" for c, name in runs[0][1])
        print(
            f"python -X importtime -c 'import {module}': cumulative {cumulative[module]:.1f} ms (median of 5)"
        )
        print(f"    slowest direct imports (ms, one run): {children}")
    hook_total = sum(c for c, _ in hook_imports) / 1000
    slowest = ", ".join(f"{name} {c / 1000:.1f}" for c, name in hook_imports[:6])
    print(f"python -X importtime -P -m scaffold.hook (fresh template copy, one run): {hook_total:.1f} ms")
    print(f"    slowest top-level imports (ms): {slowest}")
    print()
    print_ratios(results)


#: (label, command, baseline, target or None)
RATIOS = [
    ("scaffold new / copier copy --skip-tasks", "scaffold new", "copier copy -T", 1.3),
    ("copier copy (hook task) / copier copy --skip-tasks", "copier copy", "copier copy -T", 1.2),
    ("copier copy (empty task) / --skip-tasks", "copier copy, empty task", "copier copy -T", None),
    ("scaffold new / copier copy (hook task)", "scaffold new", "copier copy", None),
    ("scaffold hook alone / copier copy --skip-tasks", "scaffold hook alone", "copier copy -T", None),
    ("scaffold update / copier update (hook task)", "scaffold update", "copier update", None),
    ("scaffold update / copier update --skip-tasks", "scaffold update", "copier update -T", None),
    ("copier update (hook task) / --skip-tasks", "copier update", "copier update -T", None),
    ("scaffold --help / copier --help", "scaffold --help", "copier --help", 0.4),
    (
        "copier copy -T / the same compiling every render",
        "copier copy -T",
        "copier copy -T, no compile cache",
        None,
    ),
    (
        "copier update -T / the same compiling every render",
        "copier update -T",
        "copier update -T, no compile cache",
        None,
    ),
]


def print_ratios(results: dict[str, Timings]) -> None:
    """Each ratio as the median over rounds of (command / baseline) within the round, with its
    quartiles: the two ran back to back, so a load change between rounds cancels out. The ratio of
    the same for CPU time is given beside it (the least load-dependent figure)."""
    print(
        "RATIOS (median over rounds of the same-round wall-time ratio [its quartiles]; the same for CPU time)"
    )
    width = max(len(label) for label, *_ in RATIOS)
    for label, name, base, limit in RATIOS:
        a, b = results[name], results[base]
        paired = [x / y for x, y in zip(a.wall, b.wall, strict=True)]
        low, high = spread(paired)
        value = median(paired)
        cpu = median(x / y for x, y in zip(a.cpu, b.cpu, strict=True))
        if limit is None:
            note = "info"
        else:
            verdicts = ("MET" if value < limit else "MISSED", "met" if cpu < limit else "missed")
            note = f"target < {limit}: {verdicts[0]} (CPU: {verdicts[1]})"
        print(f"  {label:<{width}}  {value:5.2f} [{low:.2f}-{high:.2f}]  CPU {cpu:4.2f}  {note}")
    hook_ms = (median(results["copier copy"].wall) - median(results["copier copy -T"].wall)) * 1000
    hook_cpu = (median(results["copier copy"].cpu) - median(results["copier copy -T"].cpu)) * 1000
    beyond_empty = (
        median(results["copier copy"].cpu) - median(results["copier copy, empty task"].cpu)
    ) * 1000
    print(
        f"  hook task cost inside copier copy: {hook_ms:.0f} ms wall, {hook_cpu:.0f} ms CPU "
        f"({beyond_empty:.0f} ms CPU beyond an empty Python task)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="timed runs of the new/copy variants (default 9)")
    parser.add_argument(
        "--update-runs", type=int, default=5, help="timed runs of the update variants (default 5)"
    )
    parser.add_argument(
        "--help-runs", type=int, default=15, help="timed runs of the --help variants (default 15)"
    )
    return run_measurement(measure, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
