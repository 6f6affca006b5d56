""".env ownership and proxy-subnet detection, as a user meets them.

Secrets survive any number of copies, updates and detections; the user's own lines are never
touched; concurrent runs lose nothing; the subnet comes from Docker and collides with nothing;
every bad input (Docker unreachable or forbidden, a bad subnet, a broken .env) is answered
with a clear message and leaves the files as they were.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from scaffold.envfile import EnvDocument
from scaffold.subnets import choose_free, trusted_cidrs, trusted_ranges, v4_candidates, v6_candidates
from tests.helpers.requirements import require
from tests.helpers.stack import REPO_ROOT, docker, generate, unique_name
from tests.helpers.templaterepo import make_template_repo

TRUSTED = "AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"


def scaffold_cli(project: Path, *args: str, env: dict[str, str] | None = None, user: str | None = None):
    """Run the real CLI in a subprocess (as another user when asked)."""
    preexec = None
    if user is not None:
        entry = pwd.getpwnam(user)

        def preexec() -> None:
            os.setgid(entry.pw_gid)
            os.setgroups([])
            os.setuid(entry.pw_uid)

    return subprocess.run(
        [sys.executable, "-P", "-m", "scaffold", *args],
        cwd=project,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        check=False,
    )


def copier_copy_cli(dest: Path, env: dict[str, str], *data: str) -> subprocess.CompletedProcess[str]:
    """`copier copy` in a subprocess, so that `env` (e.g. DOCKER_HOST) reaches its task."""
    args = ["--data", "domain=sso.example.test", "--data", "acme_email=a@example.test"]
    for item in data:
        args += ["--data", item]
    return subprocess.run(
        ["copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", *args, str(REPO_ROOT), str(dest)],
        env={**os.environ, **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return generate(tmp_path / unique_name("det"), {})


def test_concurrent_runs_create_each_key_once(project: Path):
    (project / ".env").unlink()
    runs = [
        subprocess.Popen(
            [sys.executable, "-P", "-m", "scaffold", "detect", str(project)],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    assert all(run.wait(timeout=120) == 0 for run in runs)
    text = (project / ".env").read_text()
    for key in ("PG_PASS", "AUTHENTIK_SECRET_KEY", "AUTHENTIK_TAG", "PROXY_SUBNET"):
        assert text.count(f"\n{key}=") + text.startswith(f"{key}=") == 1, (
            f"{key} written more than once:\n{text}"
        )
    assert EnvDocument.parse(text).problems() == []


def test_secrets_are_never_printed_or_passed_on_a_command_line(tmp_path: Path):
    password = "pw-Shown-Nowhere-93"
    result = subprocess.run(
        [
            "copier", "copy", "--trust", "--defaults", "--data", "domain=sso.example.test",
            "--data", "acme_email=a@example.test", "--data", "smtp_enabled=true",
            "--data", "smtp_host=smtp.example.test", "--data", "smtp_username=mailer",
            "--data", f"smtp_password={password}", "--vcs-ref", "HEAD",
            str(Path(__file__).resolve().parents[1]), str(tmp_path / "sso"),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    env = dotenv_values(tmp_path / "sso" / ".env")
    assert env["AUTHENTIK_EMAIL__PASSWORD"] == password
    printed = result.stdout + result.stderr
    assert "Running task" in printed
    for secret in (password, env["PG_PASS"], env["AUTHENTIK_SECRET_KEY"]):
        assert secret not in printed
    assert password not in (tmp_path / "sso" / ".copier-answers.yml").read_text()


SMTP_DATA = ["smtp_enabled=true", "smtp_host=smtp.example.test", "smtp_username=mailer"]
# Leading and trailing spaces, a quote of each kind, `#` and `$`: kept exactly, nothing trimmed or expanded.
SPACED_PASSWORD = "  spaced pass #1 $HOME 'q' \"d\"  "


def files_holding(directory: Path, secret: str) -> list[str]:
    """Every file under `directory` (git's objects included) whose bytes contain `secret`."""
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            found.append(str(path.relative_to(directory)))
    return found


def test_smtp_password_from_plain_copier_reaches_env_exactly_and_its_file_is_gone(tmp_path: Path):
    project = tmp_path / "sso"
    result = copier_copy_cli(project, {}, *SMTP_DATA, f"smtp_password={SPACED_PASSWORD}")
    assert result.returncode == 0, result.stderr
    assert dotenv_values(project / ".env")["AUTHENTIK_EMAIL__PASSWORD"] == SPACED_PASSWORD
    assert not (project / ".scaffold" / "smtp-password").exists()
    assert os.stat(project / ".scaffold").st_mode & 0o777 == 0o700
    assert files_holding(project, "spaced pass #1") == [".env"]
    assert "spaced pass" not in result.stdout + result.stderr


def test_smtp_password_through_new_and_update_is_exact_replaces_the_old_one_and_only_env_holds_it(
    tmp_path: Path,
):
    template = make_template_repo(tmp_path / "template")
    project = tmp_path / "sso"
    data = ["--data", "domain=sso.example.test", "--data", "acme_email=a@example.test"]
    for item in [*SMTP_DATA, "smtp_password=old-password-1"]:
        data += ["--data", item]
    created = scaffold_cli(tmp_path, "new", str(project), "--defaults", "--template", str(template), *data)
    assert created.returncode == 0, created.stdout + created.stderr
    assert dotenv_values(project / ".env")["AUTHENTIK_EMAIL__PASSWORD"] == "old-password-1"
    assert files_holding(project, "old-password-1") == [".env"]

    updated = scaffold_cli(project, "update", "--data", f"smtp_password={SPACED_PASSWORD}")
    printed = updated.stdout + updated.stderr
    assert updated.returncode == 0, printed
    assert "AUTHENTIK_EMAIL__PASSWORD: set (value not shown)" in printed
    assert dotenv_values(project / ".env")["AUTHENTIK_EMAIL__PASSWORD"] == SPACED_PASSWORD
    assert "spaced pass" not in printed
    # .env and the backups of the previous .env (which hold the old password) are the only files with one.
    assert files_holding(project, "spaced pass #1") == [".env"]
    assert all(
        name == ".env" or name.startswith(".scaffold/backups/")
        for name in files_holding(project, "old-password-1")
    )
    assert not (project / ".scaffold" / "smtp-password").exists()


DNS_DATA = ["acme_challenge=dns", "acme_rfc2136_server=192.0.2.53", "acme_rfc2136_key_name=certbot."]
TSIG_SECRET = "dHNpZy1zZWNyZXQtZm9yLXVwZGF0ZQ=="


def test_switching_to_dns_by_update_needs_the_secret_and_keeps_it_in_env_and_certbot_s_file_only(
    tmp_path: Path,
):
    """Issue 17: an update to DNS-01: without the secret nothing changes, with it no step complains."""
    template = make_template_repo(tmp_path / "template")
    project = tmp_path / "sso"
    data = ["--data", "domain=sso.example.test", "--data", "acme_email=a@example.test"]
    created = scaffold_cli(tmp_path, "new", str(project), "--defaults", "--template", str(template), *data)
    assert created.returncode == 0, created.stdout + created.stderr
    before = snapshot(project)

    refused = scaffold_cli(project, "update", *(part for item in DNS_DATA for part in ("--data", item)))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "TSIG secret is missing" in refused.stderr and "acme_dns_secret" in refused.stderr
    assert snapshot(project) == before

    arguments = [part for item in [*DNS_DATA, f"acme_dns_secret={TSIG_SECRET}"] for part in ("--data", item)]
    updated = scaffold_cli(project, "update", *arguments)
    printed = updated.stdout + updated.stderr
    assert updated.returncode == 0, printed
    assert TSIG_SECRET not in printed and "CERTBOT_RFC2136_SECRET: set in .env (value not shown)" in printed
    credentials = project / ".scaffold" / "dns" / "credentials.ini"
    assert f"dns_rfc2136_secret = {TSIG_SECRET}\n" in credentials.read_text()
    assert os.stat(credentials).st_mode & 0o777 == 0o600
    assert sorted(files_holding(project, TSIG_SECRET)) == [".env", ".scaffold/dns/credentials.ini"]


def test_a_handoff_file_never_outlives_a_run_that_stops(pristine: Path, tmp_path: Path):
    project = copy_of(pristine, tmp_path / "proj")
    env = project / ".env"
    env.write_text("BACKUP_DIR='C:\\'\n" + env.read_text())  # detect will refuse to write
    before = env.read_bytes()
    handoff = project / ".scaffold" / "smtp-password"
    handoff.write_text("left  behind")
    handoff.chmod(0o644)
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert not handoff.exists() and env.read_bytes() == before
    assert "SMTP password given now was not saved" in result.stdout and "left" not in result.stdout


def test_pinned_values_win_and_user_values_are_never_overwritten(project: Path):
    text = (project / ".env").read_text()
    pinned = (
        "PROXY_SUBNET=10.231.44.0/28  # pinned\n"
        "AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS=10.231.44.0/28  # pinned\n"
    )
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("PROXY_SUBNET=", "AUTHENTIK_LISTEN__"))
    )
    (project / ".env").write_text(text + "\n" + pinned)
    result = scaffold_cli(project, "detect")
    assert result.returncode == 0, result.stdout
    assert pinned in (project / ".env").read_text()
    # Only checked, never changed: the user hears that the whole subnet trusts the Docker host.
    assert "trusts the proxy network's gateway 10.231.44.1" in result.stdout, result.stdout


def test_detect_migrates_a_trusted_subnet_that_includes_the_gateway(project: Path):
    """A .env written before trust left out the gateway: `scaffold detect` fixes it unasked."""
    env = EnvDocument.load(project / ".env")
    subnet = env.get("PROXY_SUBNET")
    text = (project / ".env").read_text()
    old = text.replace(
        f"AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={env.get('AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS')}\n",
        f"AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS={subnet}\n",
    )
    assert old != text
    (project / ".env").write_text(old)
    result = scaffold_cli(project, "detect")
    assert result.returncode == 0, result.stdout + result.stderr
    value = dotenv_values(project / ".env")["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"]
    network = ipaddress.ip_network(subnet)
    assert value == trusted_cidrs(trusted_ranges([network]))
    assert not any(network.network_address + 1 in ipaddress.ip_network(c) for c in value.split(","))


def test_malformed_lines_are_kept_and_reported(project: Path):
    odd = "export LEGACY=1\nNOEQUALS\nBROKEN='unterminated\nDUP=1\nDUP=2\n"
    with (project / ".env").open("a") as handle:
        handle.write(odd)
    before = (project / ".env").read_bytes()
    result = scaffold_cli(project, "detect")
    assert (project / ".env").read_bytes() == before
    for word in ("export", "NOEQUALS", "DUP"):
        assert word in result.stdout


# First lines a user may well keep in .env that python-dotenv and Docker Compose read differently: each hid
# every key below it from scaffold (the backslash escapes the closing quote and swallows lines up to the
# next `'`), and scaffold then appended new secrets that Compose used instead of the real ones.
AMBIGUOUS_FIRST_LINES = {
    "windows path in single quotes": "BACKUP_DIR='C:\\'",
    "yaml style": "BACKUP_DIR: /srv/backup",
    "text after a closing quote": "NOTE='backup' daily",
    "unclosed double quote": 'NOTE="started',
    "quoted name": "'NOTE'=1",
}


@pytest.fixture(scope="module")
def committed_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated stack in a git repository with a first commit, as `scaffold new` leaves it."""
    project = generate(tmp_path_factory.mktemp("ambiguous") / unique_name("amb"), {})
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"], cwd=project, check=True
    )
    return project


@pytest.mark.parametrize("first_line", AMBIGUOUS_FIRST_LINES.values(), ids=AMBIGUOUS_FIRST_LINES.keys())
def test_secrets_are_never_generated_while_python_dotenv_and_compose_disagree(
    committed_project: Path, first_line: str
):
    project = committed_project
    env = project / ".env"
    original = env.read_bytes()
    env.write_bytes(first_line.encode() + b"\n" + original)
    before = env.read_bytes()
    backups = sorted((project / ".scaffold" / "backups").glob("*"))
    try:
        for command in (["detect"], ["detect", "--dry-run"], ["update"]):
            result = scaffold_cli(project, *command)
            printed = result.stdout + result.stderr
            assert result.returncode == 1, f"{command}: {printed}"
            assert "line 1" in printed and "fix" in printed and "generated" not in printed, printed
            assert env.read_bytes() == before, f"{command} changed .env"
        hook = scaffold_cli(project, "hook")
        assert hook.returncode == 0, "the copier task must never fail"
        assert "line 1" in hook.stderr and env.read_bytes() == before
        assert sorted((project / ".scaffold" / "backups").glob("*")) == backups
        status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
        assert status.stdout == "", "update changed tracked files before refusing"
    finally:
        env.write_bytes(original)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated stack (with .env and .scaffold/) to copy for tests that break it."""
    return generate(tmp_path_factory.mktemp("pristine") / unique_name("pri"), {})


def copy_of(pristine: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(pristine, dest, symlinks=True)
    env = dest / ".env"  # a key to add, so that detect would write .env, a backup and the state
    env.write_text(
        "".join(line for line in env.read_text().splitlines(keepends=True) if "AUTHENTIK_TAG" not in line)
    )
    return dest


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every path under `directory` with its mode and content (a link's target), to compare before/after."""
    found: dict[str, tuple[int, bytes | str | None]] = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        found[str(path.relative_to(directory))] = (info.st_mode, content)
    return found


# Every path scaffold writes in a project (ProjectLayout.scaffold_paths), as a file or a folder.
WRITTEN_PATHS = {
    ".env": "file",
    ".scaffold": "folder",
    ".scaffold/lock": "file",
    ".scaffold/update.lock": "file",
    ".scaffold/state.json": "file",
    ".scaffold/backups": "folder",
    ".scaffold/archives": "folder",
    ".scaffold/smtp-password": "file",
    ".scaffold/dns-secret": "file",
    ".scaffold/dns": "folder",
    ".scaffold/dns/credentials.ini": "file",
}


def test_the_sweep_covers_every_path_scaffold_writes(tmp_path: Path):
    from scaffold.layout import ProjectLayout

    assert sorted(str(p.relative_to(tmp_path)) for p in ProjectLayout(tmp_path).scaffold_paths()) == sorted(
        WRITTEN_PATHS
    )


@pytest.mark.parametrize("name", WRITTEN_PATHS, ids=WRITTEN_PATHS)
def test_no_path_scaffold_writes_follows_a_symlink(pristine: Path, tmp_path: Path, name: str):
    project = copy_of(pristine, tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim"
    if WRITTEN_PATHS[name] == "file":
        victim.write_bytes((project / name).read_bytes() if (project / name).is_file() else b"precious\n")
        victim.chmod(0o644)
    else:
        victim.mkdir()
    target = project / name
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    target.parent.mkdir(mode=0o700, exist_ok=True)
    target.symlink_to(victim)
    outside, inside = snapshot(elsewhere), snapshot(project)
    for command in (["detect"], ["detect", "--dry-run"], ["hook"]):
        result = scaffold_cli(project, *command)
        printed = result.stdout + result.stderr
        assert "symbolic link" in printed and name in printed, printed
        assert result.returncode == (0 if command == ["hook"] else 1), printed
        assert snapshot(elsewhere) == outside, f"{command} wrote through the link {name}"
        assert snapshot(project) == inside, f"{command} changed the project"


@pytest.mark.parametrize("name", [".env", ".scaffold/backups"])
def test_update_refuses_a_linked_env_or_backup_folder_before_changing_anything(
    committed_project: Path, tmp_path: Path, name: str
):
    import shutil

    project = committed_project
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = project / name
    saved = tmp_path / "saved"
    if name != ".env":
        target.mkdir(mode=0o700, exist_ok=True)
    if target.is_dir():
        shutil.move(target, saved)
    else:
        shutil.copy2(target, saved)
        target.unlink()
        shutil.copy2(saved, elsewhere / "victim")
    target.symlink_to(elsewhere / "victim" if name == ".env" else elsewhere)
    outside, inside = snapshot(elsewhere), snapshot(project)
    try:
        result = scaffold_cli(project, "update")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "symbolic link" in result.stderr and name in result.stderr
        assert snapshot(elsewhere) == outside and snapshot(project) == inside
    finally:
        target.unlink()
        shutil.move(saved, target)


def test_dry_run_writes_nothing_at_all(pristine: Path, tmp_path: Path):
    import shutil

    project = copy_of(pristine, tmp_path / "proj")
    shutil.rmtree(project / ".scaffold")
    before = snapshot(project)
    result = scaffold_cli(project, "detect", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AUTHENTIK_TAG" in result.stdout and "nothing was written" in result.stdout
    assert snapshot(project) == before


def test_env_directory_is_refused_by_detect_and_survived_by_the_hook(project: Path):
    (project / ".env").unlink()
    (project / ".env").mkdir()
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert "is a directory" in result.stderr and "mv " in result.stderr
    hook = scaffold_cli(project, "hook")
    assert hook.returncode == 0, "the copier task must not fail (copier would delete a new project)"
    assert "is a directory" in hook.stderr and "scaffold detect" in hook.stderr
    assert (project / ".env").is_dir()


def test_read_only_env_is_not_changed(project: Path):
    env = project / ".env"
    text = "\n".join(line for line in env.read_text().splitlines() if not line.startswith("AUTHENTIK_TAG="))
    env.write_text(text + "\n")
    env.chmod(0o400)
    before = env.read_bytes()
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert "read-only" in result.stderr
    assert env.read_bytes() == before and env.stat().st_mode & 0o777 == 0o400


# --- Docker: the subnet comes from the daemon -------------------------------------------------


@pytest.fixture
def networks():
    """Networks created by a test, removed afterwards even when it fails."""
    created: list[str] = []

    def create(*args: str, labels: dict[str, str] | None = None, check: bool = True) -> str:
        name = unique_name("net")
        label_args = [part for key, value in (labels or {}).items() for part in ("--label", f"{key}={value}")]
        if docker("network", "create", *label_args, *args, name, check=check).returncode == 0:
            created.append(name)
        return name

    yield create
    for name in created:
        docker("network", "rm", name, check=False)


@pytest.mark.docker
def test_fresh_subnet_avoids_existing_networks_in_the_usual_ranges(tmp_path: Path, networks):
    project_name = unique_name("fresh")
    first_choice = choose_free(v4_candidates(project_name), [])
    networks("--subnet", str(first_choice))  # exactly what this project would have picked
    for subnet in ("172.29.0.0/16", "192.168.212.0/24"):
        networks("--subnet", subnet, check=False)  # fails only when that range is in use already
    project = generate(tmp_path / project_name, {"project_name": project_name})
    chosen = ipaddress.ip_network(dotenv_values(project / ".env")["PROXY_SUBNET"])
    assert chosen != first_choice
    existing = json.loads(docker("network", "inspect", *[n["Name"] for n in _networks()]).stdout)
    for net in existing:
        for config in (net.get("IPAM") or {}).get("Config") or []:
            assert not chosen.overlaps(ipaddress.ip_network(config["Subnet"])), net["Name"]
    assert "unverified" not in (project / ".env").read_text()


def _networks() -> list[dict]:
    return [
        json.loads(line) for line in docker("network", "ls", "--format", "{{json .}}").stdout.splitlines()
    ]


def _compose_labels(project: str, network: str) -> dict[str, str]:
    return {"com.docker.compose.project": project, "com.docker.compose.network": network}


@pytest.mark.docker
def test_existing_network_is_the_truth_for_v4_and_v6(tmp_path: Path, networks):
    project_name = unique_name("exist")
    project = generate(tmp_path / project_name, {"project_name": project_name, "enable_ipv6": True})
    v4 = choose_free(v4_candidates(project_name + "-other"), [])
    v6 = list(v6_candidates(project_name + "-other"))[3]
    networks(
        "--subnet", str(v4), "--ipv6", "--subnet", str(v6), labels=_compose_labels(project_name, "proxy")
    )  # fmt: skip
    result = scaffold_cli(project, "detect")
    assert result.returncode == 0, result.stdout + result.stderr
    env = dotenv_values(project / ".env")
    assert env["PROXY_SUBNET"] == str(v4)
    assert env["PROXY_SUBNET_V6"] == str(v6)
    assert env["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"] == trusted_cidrs(trusted_ranges([v4, v6]))
    assert "Docker's network" in result.stdout  # the change is explained


@pytest.mark.docker
def test_trusted_cidrs_leave_out_the_gateway_docker_reports(tmp_path: Path, networks):
    """A pre-existing network whose gateway is not the first host: that gateway is not trusted."""
    project_name = unique_name("gw")
    project = generate(tmp_path / project_name, {"project_name": project_name})
    subnet = choose_free(v4_candidates(project_name + "-gw"), [])
    gateway = subnet.network_address + 9
    labels = _compose_labels(project_name, "proxy")
    networks("--subnet", str(subnet), "--gateway", str(gateway), labels=labels)
    result = scaffold_cli(project, "detect")
    assert result.returncode == 0, result.stdout + result.stderr
    cidrs = [ipaddress.ip_network(c) for c in dotenv_values(project / ".env")[TRUSTED].split(",")]
    trusted = {address for cidr in cidrs for address in cidr}
    assert trusted == set(subnet) - {gateway}, cidrs


@pytest.mark.docker
def test_network_that_disagrees_with_a_pin_is_reported(tmp_path: Path, networks):
    project_name = unique_name("pin")
    project = generate(
        tmp_path / project_name, {"project_name": project_name, "proxy_subnet": "10.231.45.0/28"}
    )
    actual = choose_free(v4_candidates(project_name + "-x"), [])
    networks("--subnet", str(actual), labels=_compose_labels(project_name, "proxy"))
    before = (project / ".env").read_bytes()
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert str(actual) in result.stdout and "10.231.45.0/28" in result.stdout
    assert "docker compose down" in result.stdout
    assert (project / ".env").read_bytes() == before


@pytest.mark.docker
def test_overlapping_explicit_subnet_is_refused_by_detect_and_reported_by_the_hook(tmp_path: Path, networks):
    taken = "10.232.46.0/24"
    networks("--subnet", taken)
    project = generate(tmp_path / unique_name("ovl"), {"proxy_subnet": "10.232.46.16/28"})
    assert "PROXY_SUBNET=" not in (project / ".env").read_text()
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert taken in result.stdout and "overlaps" in result.stdout


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("8.8.8.0/28", "not a private range"),
        ("10.9.8.7/28", "not a network in CIDR form"),
        ("10.0.0.0/8", "/8"),
    ],
)
def test_bad_subnet_in_the_answers_is_refused(project: Path, answer: str, words: str):
    answers = project / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("proxy_subnet: auto", f"proxy_subnet: {answer}"))
    before = (project / ".env").read_bytes()
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert words in result.stdout
    assert (project / ".env").read_bytes() == before


@pytest.mark.parametrize(
    ("docker_host", "words"),
    [
        (
            "unix:///nonexistent/docker.sock",
            "cannot reach the Docker daemon at unix:///nonexistent/docker.sock",
        ),
        ("tcp://127.0.0.1:1", "cannot reach the Docker daemon"),
    ],
)
def test_unreachable_daemon_gives_a_marked_fallback_and_a_clear_message(tmp_path: Path, docker_host, words):
    env = {"DOCKER_HOST": docker_host}
    project = tmp_path / unique_name("nod")
    copied = copier_copy_cli(project, env)
    assert copied.returncode == 0, "the copier task must not fail when Docker is unreachable"
    assert "scaffold detect" in copied.stderr and words in copied.stderr
    text = (project / ".env").read_text()
    assert "PROXY_SUBNET=" in text and "# unverified" in text
    detect = scaffold_cli(project, "detect", env=env)
    assert detect.returncode == 1
    assert words in detect.stdout and "scaffold detect" in detect.stdout


@pytest.mark.docker
def test_fallback_is_verified_once_docker_answers(tmp_path: Path):
    project = tmp_path / unique_name("ver")
    assert copier_copy_cli(project, {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}).returncode == 0
    assert "# unverified" in (project / ".env").read_text()
    result = scaffold_cli(project, "detect")
    assert result.returncode == 0, result.stdout
    assert "unverified" not in (project / ".env").read_text()


def test_permission_denied_on_the_socket_is_explained(tmp_path: Path):
    """A socket the user may not open, as `/var/run/docker.sock` is for users outside the docker group.

    Root may open any file, so the check runs as root without the DAC capabilities (setpriv).
    """
    import shutil
    import socket

    can_drop = os.geteuid() == 0 and shutil.which("setpriv") is not None
    require(can_drop, "root and setpriv (util-linux) are needed")
    project = generate(tmp_path / unique_name("perm"), {})
    path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    os.chown(path, 65534, 65534)
    path.chmod(0o600)
    try:
        result = subprocess.run(
            [
                "setpriv", "--bounding-set=-dac_override,-dac_read_search",
                sys.executable, "-P", "-m", "scaffold", "detect", str(project),
            ],
            env={**os.environ, "DOCKER_HOST": f"unix://{path}", "NO_COLOR": "1"},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        listener.close()
    assert result.returncode == 1
    assert "permission denied" in result.stdout and "docker` group" in result.stdout


@pytest.mark.docker
def test_active_docker_context_is_honoured(tmp_path: Path):
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"DOCKER_CONFIG": str(config)}
    base = ["docker", "--config", str(config), "context"]
    subprocess.run(
        [*base, "create", "elsewhere", "--docker", "host=tcp://127.0.0.1:1"], check=True, capture_output=True
    )
    subprocess.run([*base, "use", "elsewhere"], check=True, capture_output=True)
    project = generate(tmp_path / unique_name("ctx"), {})
    without_host = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    result = subprocess.run(
        [sys.executable, "-P", "-m", "scaffold", "detect", str(project)],
        env={**without_host, **env, "NO_COLOR": "1"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stdout, "the context's endpoint was not used"


def test_hook_does_nothing_in_copiers_update_replicas(tmp_path: Path, project: Path):
    """copier runs tasks in throwaway renders of the old and new version; .env there would be waste."""
    replica = tmp_path / "copier._main.old_copy.x1y2z3" / "sub"
    replica.mkdir(parents=True)
    for name in (".copier-answers.yml", "compose.yaml"):
        (replica / name).write_bytes((project / name).read_bytes())
    result = scaffold_cli(replica, "hook")
    assert result.returncode == 0
    assert not (replica / ".env").exists() and not (replica / "data").exists()


@pytest.mark.docker
def test_turning_ipv6_on_for_an_existing_v4_network_says_to_recreate_it(tmp_path: Path, networks):
    project_name = unique_name("v6on")
    project = generate(tmp_path / project_name, {"project_name": project_name, "enable_ipv6": True})
    v4 = dotenv_values(project / ".env")["PROXY_SUBNET"]
    networks("--subnet", v4, labels=_compose_labels(project_name, "proxy"))  # made before IPv6 was on
    result = scaffold_cli(project, "detect")
    assert result.returncode == 1
    assert "no IPv6 subnet" in result.stdout and "docker compose down" in result.stdout
