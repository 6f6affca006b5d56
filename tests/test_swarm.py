"""Issue 18 without a swarm: what `target: swarm` renders, and `scaffold deploy`'s secrets and environment.

The stack on a real single-node swarm is tests/e2e/test_e2e_swarm.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scaffold import envkeys
from scaffold.answers import load_answers
from scaffold.dockerapi import DockerNetwork, SwarmService
from scaffold.doctor.core import FAIL, OK, SERVICES, WARN
from scaffold.doctor.stack.swarm import judge
from scaffold.envfile import EnvDocument
from scaffold.errors import ProjectError
from scaffold.layout import ProjectLayout
from scaffold.newproject import missing_stack_keys
from scaffold.swarm import (
    DNS_CREDENTIALS,
    SECRET_FILES,
    run_deploy,
    secret_name,
    stack_environment,
    wanted_secrets,
)
from tests.helpers.requirements import require
from tests.helpers.stack import generate

SMTP = {
    "smtp_enabled": True,
    "smtp_host": "mail.example.test",
    "smtp_username": "sso",
    "smtp_password": "pw 1",
}


@pytest.fixture(scope="module")
def swarm_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("swarm") / "sso", {"project_name": "sso", "target": "swarm", **SMTP}
    )


@pytest.fixture(scope="module")
def stack_file(swarm_project: Path) -> dict:
    return yaml.safe_load((swarm_project / "compose.yaml").read_text())


def test_the_stack_file_reads_no_secret_from_the_environment(swarm_project: Path, stack_file: dict) -> None:
    text = (swarm_project / "compose.yaml").read_text()
    for key in envkeys.SECRET_KEYS:
        assert f"${{{key}" not in text, f"{key} would be substituted into a service spec"
    for name, service in stack_file["services"].items():
        assert "env_file" not in service, f"{name}: env_file puts every .env value into the service spec"
    env = stack_file["x-authentik-environment"]
    assert env["AUTHENTIK_SECRET_KEY"] == "file:///run/secrets/authentik_secret_key"
    assert env["AUTHENTIK_POSTGRESQL__PASSWORD"] == "file:///run/secrets/pg_pass"
    assert env["AUTHENTIK_EMAIL__PASSWORD"] == "file:///run/secrets/smtp_password"
    assert (
        stack_file["services"]["postgresql"]["environment"]["POSTGRES_PASSWORD_FILE"]
        == "/run/secrets/pg_pass"
    )
    assert all(secret["external"] for secret in stack_file["secrets"].values())


def test_replicas_updates_placement_and_ports(stack_file: dict) -> None:
    services = stack_file["services"]
    server = services["server"]["deploy"]
    assert server["replicas"] == "${AUTHENTIK_SERVER_REPLICAS:-2}"
    assert (server["update_config"]["parallelism"], server["update_config"]["order"]) == (1, "start-first")
    for name in ("postgresql", "certbot"):
        assert services[name]["deploy"]["placement"]["constraints"] == ["node.labels.authentik.state == true"]
    nginx = services["nginx"]
    assert nginx["deploy"]["mode"] == "global"
    assert nginx["deploy"]["placement"]["constraints"] == ["node.labels.authentik.edge == true"]
    assert {(p["target"], p["mode"]) for p in nginx["ports"]} == {(80, "host"), (443, "host")}
    assert {s["deploy"]["endpoint_mode"] for s in services.values()} == {"dnsrr"}
    assert {n["driver"] for n in stack_file["networks"].values()} == {"overlay"}
    assert stack_file["networks"]["backend"]["internal"] is True


def test_nginx_finds_every_replica_and_retries_on_another(swarm_project: Path, tmp_path: Path) -> None:
    site = (swarm_project / "nginx/conf.d/authentik.conf").read_text()
    assert "resolver 127.0.0.11 valid=5s" in site and "set $scaffold_authentik tasks.server;" in site
    assert "proxy_pass https://$scaffold_authentik:9443;" in site and "upstream authentik" not in site
    proxy = (swarm_project / "nginx/snippets/proxy-authentik.conf").read_text()
    assert "proxy_next_upstream error timeout" in proxy and "proxy_connect_timeout 2s;" in proxy
    compose = generate(tmp_path / "one", {"project_name": "one"}, skip_tasks=True)
    assert "upstream authentik {" in (compose / "nginx/conf.d/authentik.conf").read_text()
    assert "proxy_next_upstream" not in (compose / "nginx/snippets/proxy-authentik.conf").read_text()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")
def test_docker_stack_config_accepts_the_file_and_compose_config_too(swarm_project: Path) -> None:
    """`docker stack config` is what `docker stack deploy` parses; `scaffold update` runs `docker compose
    config` on the same file, and `scaffold new` checks every `${...:?}` guard against .env."""
    env = EnvDocument.load(swarm_project / ".env")
    environment = stack_environment(env, wanted_secrets(load_answers(swarm_project), env, swarm_project))
    result = subprocess.run(
        ["docker", "stack", "config", "-c", "compose.yaml"],
        cwd=swarm_project, env=environment, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert rendered["secrets"]["pg_pass"]["name"].startswith("sso_pg_pass_")
    assert missing_stack_keys(swarm_project) == []
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        config = subprocess.run(
            ["docker", "compose", "config", "--quiet"], cwd=swarm_project, capture_output=True, text=True
        )
        assert config.returncode == 0, config.stderr


def test_secret_names_change_with_the_value_and_tell_nothing_about_it() -> None:
    name = secret_name("sso", envkeys.PG_PASS, "hunter2-hunter2", "salt")
    assert name == secret_name("sso", envkeys.PG_PASS, "hunter2-hunter2", "salt")
    assert name.startswith("sso_pg_pass_") and "hunter2" not in name
    assert name != secret_name("sso", envkeys.PG_PASS, "hunter3-hunter3", "salt")
    # Keyed: without the secret key, candidate passwords cannot be tried against the name.
    assert name != secret_name("sso", envkeys.PG_PASS, "hunter2-hunter2", "other")
    assert len(secret_name("p" * 64, envkeys.SMTP_PASSWORD, "x", "salt")) <= 64


def test_deploy_environment_has_the_secret_names_but_never_their_values(
    swarm_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(envkeys.PG_PASS, "from-the-shell")
    env = EnvDocument.load(swarm_project / ".env")
    secrets = wanted_secrets(load_answers(swarm_project), env, swarm_project)
    assert [s.key for s in secrets] == [envkeys.PG_PASS, envkeys.SECRET_KEY, envkeys.SMTP_PASSWORD]
    assert secrets[2].value == "pw 1"
    environment = stack_environment(env, secrets)
    assert not set(SECRET_FILES) & set(environment), (
        "a secret value reached docker stack deploy's environment"
    )
    assert environment["PROXY_SUBNET"] == env.get("PROXY_SUBNET")
    assert environment["SCAFFOLD_SECRET_AUTHENTIK_EMAIL__PASSWORD"].startswith("sso_smtp_password_")
    values = json.dumps(environment)
    assert all(secret.value not in values for secret in secrets)


def test_deploy_without_the_smtp_password_the_stack_reads_names_the_fix(swarm_project: Path) -> None:
    env = EnvDocument.load(swarm_project / ".env")
    env.set(envkeys.SMTP_PASSWORD, "")
    with pytest.raises(ProjectError) as caught:
        wanted_secrets(load_answers(swarm_project), env, swarm_project)
    assert envkeys.SMTP_PASSWORD in caught.value.message and "smtp_password" in (caught.value.hint or "")


def test_deploy_of_a_compose_project_says_how_to_switch(tmp_path: Path) -> None:
    project = generate(tmp_path / "one", {"project_name": "one"}, skip_tasks=True)
    with pytest.raises(ProjectError) as caught:
        run_deploy(project)
    assert "docker compose up -d" in caught.value.message
    assert "scaffold update --data target=swarm" in (caught.value.hint or "")


def test_the_stack_s_overlay_network_is_found_by_its_namespace_label() -> None:
    overlay = DockerNetwork(
        id="x", name="sso_proxy", subnets=(), labels={"com.docker.stack.namespace": "sso"}
    )
    assert overlay.belongs_to("sso", "proxy")
    assert not overlay.belongs_to("sso", "backend") and not overlay.belongs_to("other", "proxy")
    compose = DockerNetwork(
        id="y",
        name="x",
        subnets=(),
        labels={"com.docker.compose.project": "sso", "com.docker.compose.network": "proxy"},
    )
    assert compose.belongs_to("sso", "proxy")


def _services(**changes: dict) -> list[SwarmService]:
    base = {name: {"mode": "replicated", "desired": 1, "running": 1} for name in SERVICES}
    base["server"]["desired"] = base["server"]["running"] = 2
    base["nginx"]["mode"] = "global"
    for name, change in changes.items():
        base[name].update(change)
    return [SwarmService(name=f"sso_{name}", **fields) for name, fields in base.items()]


def test_doctor_judges_a_converged_stack_ok_and_says_what_is_missing() -> None:
    assert judge("sso", _services()).status == OK
    assert judge("sso", []).status == FAIL
    starting = judge("sso", _services(server={"running": 1, "task_error": "task: non-zero exit (1)"}))
    assert (
        starting.status == WARN and "server: 1/2 tasks running (task: non-zero exit (1))" in starting.message
    )
    unplaced = judge("sso", _services(nginx={"desired": 0, "running": 0}))
    assert unplaced.status == FAIL and "authentik.edge" in (unplaced.message + (unplaced.fix or ""))
    rolled = judge(
        "sso", _services(server={"update_state": "rollback_completed", "update_message": "rolled back"})
    )
    assert rolled.status == FAIL and "rollback_completed" in rolled.message
    assert judge("sso", [s for s in _services() if not s.name.endswith("worker")]).status == FAIL


@pytest.mark.docker  # the update re-runs detection, which asks the daemon for free subnets
def test_update_switches_a_compose_project_to_swarm_keeping_its_secrets(tmp_path: Path, capsys) -> None:
    """`scaffold update --data target=swarm`: the stack file replaces compose.yaml, nginx follows Swarm's
    task DNS, .env keeps its secrets, and the next step named is `scaffold deploy`."""
    from dotenv import dotenv_values

    from scaffold.cli import main
    from tests.helpers.projects import new_project
    from tests.helpers.templaterepo import make_template_repo

    project = new_project(tmp_path / "sso", make_template_repo(tmp_path / "template"))
    before = dotenv_values(project / ".env")
    capsys.readouterr()
    assert main(["update", str(project), "--data", "target=swarm"]) == 0
    out = capsys.readouterr().out
    assert "apply it with: scaffold deploy" in out, out
    stack = yaml.safe_load((project / "compose.yaml").read_text())
    assert stack["services"]["server"]["deploy"]["update_config"]["order"] == "start-first"
    assert "tasks.server" in (project / "nginx/conf.d/authentik.conf").read_text()
    after = dotenv_values(project / ".env")
    assert all(after[key] == before[key] for key in (envkeys.PG_PASS, envkeys.SECRET_KEY))


@pytest.mark.docker
def test_deploy_outside_a_swarm_says_how_to_make_one(swarm_project: Path, capsys) -> None:
    from scaffold.cli import main

    info = ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]
    state = subprocess.run(info, capture_output=True, text=True, check=False).stdout.strip()
    # Locally a daemon someone put in a swarm skips this; in CI (a fresh daemon) it fails the test.
    require(
        state == "inactive", f"the daemon's swarm state is {state!r}; this test needs one outside any swarm"
    )
    before = (swarm_project / ".env").read_bytes()
    assert main(["deploy", str(swarm_project)]) == 1
    err = capsys.readouterr().err
    assert "not part of a swarm" in err and "docker swarm init" in err, err
    assert (swarm_project / ".env").read_bytes() == before


TSIG = "c2VjcmV0LXRzaWcta2V5LWJ5dGVz"
DNS = {
    "acme_challenge": "dns",
    "acme_wildcard": True,
    "acme_rfc2136_server": "192.0.2.53",
    "acme_rfc2136_key_name": "certbot.",
    "acme_dns_secret": TSIG,
    "http_port": 0,
}


def test_dns01_on_swarm_reads_its_credentials_from_a_swarm_secret(tmp_path: Path) -> None:
    """Issues 17 and 18: certbot's DNS plugin reads the credentials file as a Swarm secret that
    `scaffold deploy` makes from .scaffold/dns/credentials.ini; nothing of it is in the stack file or
    in `docker stack deploy`'s environment; without port 80 nginx publishes only 443."""
    project = generate(tmp_path / "sso", {"project_name": "sso", "target": "swarm", **DNS})
    text = (project / "compose.yaml").read_text()
    assert TSIG not in text
    stack = yaml.safe_load(text)
    certbot = stack["services"]["certbot"]
    assert certbot["image"].startswith("certbot/dns-rfc2136:")
    assert certbot["environment"]["DNS_CREDENTIALS"] == "/run/secrets/dns_credentials"
    assert certbot["environment"]["CERT_WILDCARD"] == "true"
    assert certbot["secrets"] == [{"source": "dns_credentials", "target": "dns_credentials", "mode": 0o400}]
    assert stack["secrets"]["dns_credentials"]["external"] is True
    assert [port["target"] for port in stack["services"]["nginx"]["ports"]] == [443]

    env = EnvDocument.load(project / ".env")
    secrets = wanted_secrets(load_answers(project), env, project)
    credentials = next(secret for secret in secrets if secret.key == DNS_CREDENTIALS)
    assert f"dns_rfc2136_secret = {TSIG}" in credentials.value
    assert credentials.name.startswith("sso_dns_credentials_")
    environment = stack_environment(env, secrets)
    assert environment["SCAFFOLD_SECRET_DNS_CREDENTIALS"] == credentials.name
    assert TSIG not in json.dumps(environment)

    ProjectLayout(project).dns_credentials.unlink()
    with pytest.raises(ProjectError) as caught:
        wanted_secrets(load_answers(project), env, project)
    assert "scaffold detect" in (caught.value.hint or "")
