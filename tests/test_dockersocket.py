"""The copier task's Docker reads without the Docker SDK: the stdlib client of the local socket.

It must pick the same daemon the docker CLI would (else it leaves the decision to the SDK), read
the same networks, attachments and volumes as the SDK does from the real daemon, explain a socket
that is not Docker's, and keep the SDK (requests, urllib3) out of the copier task's process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaffold.dockerapi import COMPOSE_PROJECT_LABEL, COMPOSE_VOLUME_LABEL, DockerAPI, connect
from scaffold.dockersocket import DEFAULT_SOCKET, DockerSocketError, SocketClient, local_socket_path
from scaffold.errors import DockerUnavailable
from tests.helpers.stack import REPO_ROOT, docker, generate, unique_name


def config_dir(tmp_path: Path, config: str | None) -> dict[str, str]:
    """An environment whose docker CLI config directory holds `config` as config.json."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    if config is not None:
        (directory / "config.json").write_text(config)
    return {"DOCKER_CONFIG": str(directory)}


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        ({}, None, DEFAULT_SOCKET),
        ({}, '{"auths": {}}', DEFAULT_SOCKET),
        ({}, '{"currentContext": "default"}', DEFAULT_SOCKET),
        ({}, "not json", DEFAULT_SOCKET),  # as the SDK: an unreadable config means the default
        ({}, '{"currentContext": "elsewhere"}', None),
        ({"DOCKER_CONTEXT": "elsewhere"}, None, None),
        ({"DOCKER_CONTEXT": "default"}, '{"currentContext": "elsewhere"}', DEFAULT_SOCKET),
        ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, None, "/run/user/1000/docker.sock"),
        ({"DOCKER_HOST": "tcp://192.0.2.10:2376"}, None, None),
        ({"DOCKER_HOST": "ssh://admin@192.0.2.10"}, None, None),
    ],
)
def test_local_socket_is_used_only_where_the_docker_cli_would_use_it(tmp_path: Path, env, config, expected):
    assert local_socket_path({**config_dir(tmp_path, config), **env}) == expected


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A unix socket that answers every connection with the next canned bytes (then closes)."""
    path = str(tmp_path / "fake.sock")
    answers: list[bytes] = []
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(answers.pop(0) if answers else b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, answers
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_socket_that_is_not_dockers_is_named_in_the_error(fake_daemon, monkeypatch) -> None:
    path, answers = fake_daemon
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    answers.append(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(DockerUnavailable) as raised:
        connect(sdk=False)
    assert f"cannot reach the Docker daemon at unix://{path}" in raised.value.message
    assert "did not answer in HTTP" in raised.value.message and raised.value.hint


def test_an_http_error_carries_the_daemons_message(fake_daemon) -> None:
    path, answers = fake_daemon
    answers.append(
        b'HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n{"message":"network x not found"}'
    )
    answers.append(b"HTTP/1.0 200 OK\r\n\r\n<html>")
    client = SocketClient(path, timeout=5)
    with pytest.raises(DockerSocketError, match="GET /networks/x: 404 network x not found"):
        client.inspect_network("x")
    with pytest.raises(DockerSocketError, match="not JSON"):
        client.networks()


@pytest.mark.docker
def test_socket_client_reads_what_the_sdk_reads(docker_client, standin_images) -> None:
    """Networks, a network's attachments and a project's volume, from the real daemon both ways."""
    name = unique_name("sock")
    docker("network", "create", "--label", f"{COMPOSE_PROJECT_LABEL}={name}", name)
    docker("volume", "create", "--label", f"{COMPOSE_PROJECT_LABEL}={name}",
           "--label", f"{COMPOSE_VOLUME_LABEL}=database", f"{name}_database")  # fmt: skip
    docker("run", "-d", "--name", name, "--network", name, "--entrypoint", "sleep",
           standin_images.client, "infinity")  # fmt: skip
    try:
        local = connect(sdk=False)
        assert isinstance(local.client, SocketClient) and local.is_local
        sdk = DockerAPI(client=docker_client, endpoint="unix:///var/run/docker.sock")
        assert {n.id: n for n in local.networks()} == {n.id: n for n in sdk.networks()}
        network = next(n for n in local.networks() if n.name == name)
        assert network.compose_project == name
        attached = local.attachments(network)
        assert attached == sdk.attachments(network) and [a.container for a in attached] == [name]
        assert attached[0].ipv4 is not None and attached[0].ipv4 in network.subnets[0]
        assert local.project_volume_exists(name, "database") and sdk.project_volume_exists(name, "database")
        assert not local.project_volume_exists(name, "other")
        assert not local.project_volume_exists(unique_name("none"), "database")
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", f"{name}_database", check=False)
        docker("network", "rm", name, check=False)


TASK = ["-P", "-m", "scaffold.hook"]  # copier.yml's task, after PYTHONPATH=<template> and the Python


def test_copier_task_command_is_the_hook_module() -> None:
    assert " ".join(TASK) in (REPO_ROOT / "copier.yml").read_text()


@pytest.mark.docker
def test_copier_task_leaves_the_docker_sdk_and_the_cli_unimported(tmp_path: Path) -> None:
    """The task copier runs after every copy talks to the local daemon without the SDK's imports
    (requests, urllib3, charset_normalizer: ~60 ms, once 40% of the task) and without argparse."""
    project = generate(tmp_path / unique_name("imp"), {}, skip_tasks=True)
    without_host = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *TASK], cwd=project,
        env={**without_host, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    env_text = (project / ".env").read_text()
    assert "PROXY_SUBNET=" in env_text and "unverified" not in env_text, result.stdout + result.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "scaffold.detect" in imported, "no import times: the check would prove nothing"
    unwanted = {
        "docker",
        "requests",
        "urllib3",
        "charset_normalizer",
        "argparse",
        "scaffold.cli",
        "ruamel.yaml",
    }
    assert not unwanted & imported, unwanted & imported
