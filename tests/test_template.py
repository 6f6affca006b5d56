"""The rendered stack, checked with the real tools: Compose v2 and nginx (a stand-in image).

Each variant a user can choose is rendered through copier (tasks included, so `.env` is the
hook's), then `docker compose config` must accept it and `nginx -t` must pass in a real nginx.
Every bad answer must be refused at the question with a message that says what is wrong.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import compose_available, require
from dotenv import dotenv_values
from stack import DOMAIN, REPO_ROOT, docker, generate, unique_name

from scaffold.cli import main

VARIANTS = {
    "defaults": {},
    "ipv6": {"enable_ipv6": True},
    "http-upstream": {"upstream_scheme": "http"},
    "custom-acme": {"acme_server": "https://acme.zerossl.com/v2/DV90", "http_port": 8080, "https_port": 8443},
    "smtp": {
        "smtp_enabled": True,
        "smtp_host": "smtp.example.test",
        "smtp_security": "ssl",
        "smtp_username": "mailer",
        "smtp_password": "s3cret 'quoted' #pass",
        "smtp_from": "authentik@example.test",
    },
    "docker-socket": {"outpost_docker_socket": True},
    "no-email": {"acme_email": "", "acme_accept_no_email": True},
    "pinned-subnet": {"proxy_subnet": "10.222.77.0/28"},
    "web-path": {"web_path": "/auth/", "https_port": 8443},
    # A router takes public port 443 to host port 8443: users open https://DOMAIN.
    "behind-router": {"https_port": 8443, "public_url": f"https://{DOMAIN}"},
    "upstream-proxies": {"upstream_proxies": "192.0.2.10, 198.51.100.0/24 2001:db8::/48"},
    "cloudflare": {"upstream_proxies": "cloudflare, 10.20.30.0/24"},
}
SERVICES = {"postgresql", "server", "worker", "nginx", "certbot"}


def compose_config(project: Path) -> dict:
    require(compose_available(), "`docker compose` v2 is not installed")
    result = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    project = generate(tmp_path_factory.mktemp(name) / unique_name("tpl"), VARIANTS[name])
    return name, project


def test_compose_config_accepts_the_stack(rendered):
    name, project = rendered
    config = compose_config(project)
    assert set(config["services"]) == SERVICES
    assert "version" not in (project / "compose.yaml").read_text().split("services:")[0]
    for service, spec in config["services"].items():
        assert spec.get("restart") == "unless-stopped", f"{service} has no restart policy"
        if service != "nginx":
            assert not spec.get("ports"), f"{service} publishes ports: only nginx may"
    ports = {(p["published"], p["target"]) for p in config["services"]["nginx"]["ports"]}
    http, https = VARIANTS[name].get("http_port", 80), VARIANTS[name].get("https_port", 443)
    assert ports == {(str(http), 80), (str(https), 443)}


def test_networks_isolate_the_database_and_pin_the_proxy_subnet(rendered):
    name, project = rendered
    config = compose_config(project)
    services = config["services"]
    assert set(services["postgresql"]["networks"]) == {"backend"}
    assert config["networks"]["backend"].get("internal") is True
    assert "backend" not in services["nginx"]["networks"], "nginx must not reach PostgreSQL"
    assert {"proxy", "backend"} <= set(services["server"]["networks"])
    assert "proxy" not in services["worker"]["networks"] and "proxy" not in services["certbot"]["networks"]

    env = dotenv_values(project / ".env")
    subnets = [entry["subnet"] for entry in config["networks"]["proxy"]["ipam"]["config"]]
    expected = [env["PROXY_SUBNET"]] + ([env["PROXY_SUBNET_V6"]] if name == "ipv6" else [])
    assert subnets == expected
    assert env["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"] == ",".join(expected)
    assert bool(config["networks"]["proxy"].get("enable_ipv6")) == (name == "ipv6")
    if name == "pinned-subnet":
        assert env["PROXY_SUBNET"] == "10.222.77.0/28"


def test_authentik_settings_and_secrets_reach_the_containers_only_through_env(rendered):
    name, project = rendered
    config = compose_config(project)
    env = dotenv_values(project / ".env")
    server = config["services"]["server"]["environment"]
    assert server["AUTHENTIK_WEB__BASE_URL"].startswith(f"https://{DOMAIN}")
    assert server["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"] == env["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"]
    assert server["AUTHENTIK_POSTGRESQL__PASSWORD"] == env["PG_PASS"]
    postgres = config["services"]["postgresql"]["environment"]
    assert "AUTHENTIK_SECRET_KEY" not in postgres, "the database must not get authentik's secret key"
    tracked = "".join(
        p.read_text()
        for p in project.rglob("*")
        if p.is_file() and p.name != ".env" and ".git" not in p.parts and ".scaffold" not in p.parts
    )
    for secret in ("PG_PASS", "AUTHENTIK_SECRET_KEY"):
        assert env[secret] and env[secret] not in tracked
    if name == "smtp":
        assert env["AUTHENTIK_EMAIL__PASSWORD"] == VARIANTS["smtp"]["smtp_password"]
        assert env["AUTHENTIK_EMAIL__USE_SSL"] == "true" and env["AUTHENTIK_EMAIL__PORT"] == "465"
        assert VARIANTS["smtp"]["smtp_password"] not in (project / ".copier-answers.yml").read_text()
        assert not (project / ".scaffold" / "smtp-password").exists(), (
            "the password hand-off file was left behind"
        )


def test_docker_socket_only_when_asked(rendered):
    name, project = rendered
    worker = compose_config(project)["services"]["worker"]
    mounts = [v.get("source", "") for v in worker.get("volumes", [])]
    if name == "docker-socket":
        assert "/var/run/docker.sock" in mounts and worker.get("user") == "root"
    else:
        assert all("docker.sock" not in m for m in mounts) and worker.get("user") != "root"
        assert not any("docker.sock" in str(spec) for spec in compose_config(project)["services"].values())


def test_certbot_gets_the_acme_server_and_email(rendered):
    name, project = rendered
    environment = compose_config(project)["services"]["certbot"]["environment"]
    expected = VARIANTS[name].get("acme_server", "https://acme-v02.api.letsencrypt.org/directory")
    assert environment["ACME_SERVER"] == expected
    assert environment["ACME_EMAIL"] == VARIANTS[name].get("acme_email", "admin@example.test")


def directives(text: str, name: str) -> list[str]:
    """Arguments of every `name ...;` directive in an nginx file (comments ignored)."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line[len(name) :].strip().rstrip(";").strip() for line in lines if line.startswith(name + " ")]


def test_web_path_serves_authentik_under_the_path_only(rendered):
    """web_path: authentik gets AUTHENTIK_WEB__PATH, nginx proxies only that path, the root is the user's."""
    name, project = rendered
    server = compose_config(project)["services"]["server"]["environment"]
    conf = (project / "nginx" / "conf.d" / "authentik.conf").read_text()
    site_root = project / "nginx" / "custom" / "site-root.conf"
    port = VARIANTS[name].get("https_port", 443)
    origin = VARIANTS[name].get("public_url", f"https://{DOMAIN}" + (f":{port}" if port != 443 else ""))
    # authentik adds web.path to the base URL itself: the base URL stays the origin.
    assert server["AUTHENTIK_WEB__BASE_URL"] == origin
    https_block = conf[conf.index("listen 443") :]
    locations = re.findall(r"^\s*location\s+([^{]+?)\s*\{", https_block, flags=re.MULTILINE)
    if name == "web-path":
        assert server["AUTHENTIK_WEB__PATH"] == "/auth/"
        assert locations == ["^~ /auth/", "= /auth"], locations
        # Relative: the browser keeps the address (and port) it used.
        assert "return 301 /auth/$is_args$args;" in conf
        assert "proxy_pass https://authentik;" in https_block
        assert directives(site_root.read_text(), "return") == ["404"]
        assert directives(https_block, "include").count("/etc/nginx/custom/site-root.conf") == 1
    else:
        assert "AUTHENTIK_WEB__PATH" not in server
        assert locations == ["/"], locations
        assert "site-root.conf" not in conf, "the user's root site is included only under a path"
        assert directives(site_root.read_text(), "return") == ["404"]
    # The ACME challenge and the redirect on port 80 do not depend on the path.
    http_block = conf[conf.index("listen 80") : conf.index("listen 443")]
    assert "include /etc/nginx/snippets/acme-challenge.conf;" in http_block
    assert f"return 301 {origin}$request_uri;" in http_block


def test_only_the_domain_reaches_authentik_with_the_host_the_client_sent(rendered):
    """Issue 12: Host passed as sent; the site answers the domain bare or on its own ports only."""
    name, project = rendered
    conf = (project / "nginx" / "conf.d" / "authentik.conf").read_text()
    proxy = (project / "nginx" / "snippets" / "proxy-authentik.conf").read_text()
    headers = directives(proxy, "proxy_set_header")
    assert "Host $scaffold_site_host" in headers and "X-Forwarded-Host $scaffold_site_host" in headers
    site_map = conf[conf.index("map $http_host $scaffold_site_host") :]
    site_map = site_map[: site_map.index("}")]
    port = VARIANTS[name].get("https_port", 443)
    hosts = {DOMAIN} | ({f"{DOMAIN}:{port}"} if port != 443 else set())
    entries = {line.strip().rstrip(";") for line in site_map.splitlines()[1:] if line.strip()}
    assert entries == {'default ""'} | {f"{host} {host}" for host in hosts}, entries
    https_block = conf[conf.index("listen 443") :]
    assert 'if ($scaffold_site_host = "") {\n        return 421;' in https_block
    for block in (https_block, conf[conf.index("listen 80") : conf.index("listen 443")]):
        assert "include /etc/nginx/snippets/redirects.conf;" in block
    redirects = (project / "nginx" / "snippets" / "redirects.conf").read_text()
    assert directives(redirects, "absolute_redirect") == ["off"]
    assert directives(redirects, "port_in_redirect") == ["off"]
    default = (project / "nginx" / "conf.d" / "00-scaffold-default.conf").read_text()
    assert directives(default[default.index("listen 443") :], "return") == ["421"]


UPSTREAMS = {
    "upstream-proxies": (["192.0.2.10", "198.51.100.0/24", "2001:db8::/48"], "X-Forwarded-For", False),
    "cloudflare": (["10.20.30.0/24"], "CF-Connecting-IP", True),
}


def test_real_ip_comes_only_from_the_listed_upstream_proxies(rendered):
    """upstream_proxies: set_real_ip_from exactly those ranges, the header that proxy sets, recursive."""
    name, project = rendered
    snippets = project / "nginx" / "snippets"
    real_ip = (snippets / "real-ip.conf").read_text()
    conf = (project / "nginx" / "conf.d" / "authentik.conf").read_text()
    assert conf.count("include /etc/nginx/snippets/real-ip.conf;") == 2, "both server blocks need it"
    proxy = (snippets / "proxy-authentik.conf").read_text()
    assert directives(proxy, "proxy_set_header").count("X-Forwarded-For $remote_addr") == 1
    if name not in UPSTREAMS:
        for name_ in ("set_real_ip_from", "real_ip_header", "real_ip_recursive", "include"):
            assert directives(real_ip, name_) == [], f"{name_} without upstream proxies"
        return
    ranges, header, cloudflare = UPSTREAMS[name]
    assert directives(real_ip, "set_real_ip_from") == ranges
    assert directives(real_ip, "real_ip_header") == [header]
    assert directives(real_ip, "real_ip_recursive") == ["on"]
    includes = directives(real_ip, "include")
    assert includes == (["/etc/nginx/snippets/cloudflare-ranges.conf"] if cloudflare else [])


def test_cloudflare_ranges_are_valid_and_narrow():
    """The template's copy of Cloudflare's list: strict CIDRs, both families, none absurdly broad."""
    text = (REPO_ROOT / "template" / "nginx" / "snippets" / "cloudflare-ranges.conf").read_text()
    networks = [ipaddress.ip_network(item) for item in directives(text, "set_real_ip_from")]
    assert {n.version for n in networks} == {4, 6}
    assert len(networks) == len(set(networks))
    for network in networks:
        assert network.prefixlen >= (8 if network.version == 4 else 16), network
        assert network.is_global, network
    assert all(line.startswith(("#", "set_real_ip_from ")) for line in text.splitlines() if line)


def _self_signed(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True)
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@pytest.mark.docker
def test_nginx_accepts_the_generated_configuration(rendered, standin_images):
    """`nginx -t` in a real nginx, with the stack's mounts and a certificate where certbot puts it."""
    name, project = rendered
    letsencrypt = project / "letsencrypt"
    _self_signed(letsencrypt / "scaffold" / "placeholder")
    (letsencrypt / "scaffold" / "current").symlink_to("placeholder")
    mounts = []
    for local, inside in (
        ("nginx/conf.d", "/etc/nginx/conf.d"),
        ("nginx/snippets", "/etc/nginx/snippets"),
        ("nginx/custom", "/etc/nginx/custom"),
        ("letsencrypt", "/etc/letsencrypt"),
    ):
        mounts += ["-v", f"{project / local}:{inside}:ro"]
    network = []
    if name == "ipv6":  # `listen [::]:443` needs IPv6 inside the container
        network = ["--sysctl", "net.ipv6.conf.all.disable_ipv6=0"]
    result = docker(
        "run", "--rm", *mounts, *network, "--add-host", "server:127.0.0.1",
        standin_images.nginx, "nginx", "-t", check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


BAD_ANSWERS = [
    ("domain=https://sso.example.com", "has a scheme"),
    ("domain=*.example.com", "is a wildcard"),
    ("domain=sso.example.com/auth", "has a path"),
    ("domain=sso.example.com:8443", "has a port"),
    ("domain=localhost", "not a valid host name"),
    ("acme_email=admin", "not a valid e-mail address"),
    ("acme_email=", "No ACME e-mail given"),
    ("proxy_subnet=10.1.2.0/33", "/33"),
    ("proxy_subnet=300.1.2.0/24", "not an IPv4 CIDR"),
    ("proxy_subnet=8.8.8.0/28", "not a private range"),
    ("proxy_subnet=10.1.2.5/28", "host bits set"),
    ("project_name=My Stack", "not a valid Compose project name"),
    ("project_name=-stack", "not a valid Compose project name"),
    ("acme_server=http://acme.example.test/dir", "nor an https URL"),
    ("acme_server=zerossl", "nor an https URL"),
    ("authentik_version=latest", "not an authentik release tag"),
    ("authentik_version=2025.10.2", "older than this template supports"),
    ("https_port=80", "must differ"),
    ("public_url=http://sso.example.test", "is not an https URL"),
    ("public_url=sso.example.test", "is not an https URL"),
    ("public_url=https://sso.example.test/auth/", "more than a host and port"),
    ("public_url=https://sso.example.test/", "more than a host and port"),
    ("public_url=https://other.example.test", "is not on the domain sso.example.test"),
    ("public_url=https://sso.example.test:0", "no valid port"),
    ("public_url=https://sso.example.test:70000", "no valid port"),
    ("public_url=https://sso.example.test:", "no valid port"),
    ("public_url=https://sso.example.test:443", "leave out :443"),
    ("proxy_subnet=172.17.0.0/28", "overlaps 172.17.0.0/16"),
    ("web_path=auth", "must start and end with '/'"),
    ("web_path=/auth", "must start and end with '/'"),
    ("web_path=/a//b/", "empty segment"),
    ("web_path=/sso/../", "'.' or '..' segment"),
    ("web_path=/my auth/", "not URL-safe"),
    ("web_path=/.well-known/sso/", "under /.well-known/"),
    ("upstream_proxies=0.0.0.0/0", "every IPv4 address"),
    ("upstream_proxies=::/0", "every IPv6 address"),
    ("upstream_proxies=192.0.2.10, 10.0.0.0/4", "far broader than any proxy"),
    ("upstream_proxies=192.0.2.300", "not an IPv4 address"),
    ("upstream_proxies=192.0.2.0/33", "an IPv4 prefix is /0 to /32"),
    ("upstream_proxies=192.0.2.1/24", "did you mean 192.0.2.0/24"),
    ("upstream_proxies=2001:db8:::1", "not an IPv6 address or CIDR"),
    ("upstream_proxies=2001:db8::1/64", "did you mean 2001:db8:0:0::/64"),
    ("upstream_proxies=192.0.2.0/x", "not an address or CIDR"),
    ("upstream_proxies=cloudflare, my-router", "'my-router' is neither 'cloudflare' nor"),
]


@pytest.mark.parametrize(("answer", "message"), BAD_ANSWERS)
def test_bad_answer_is_refused_with_a_reason(tmp_path: Path, capsys, answer: str, message: str):
    dest = tmp_path / "sso"
    data = {"domain": "sso.example.test", "acme_email": "admin@example.test"}
    key, _, value = answer.partition("=")
    data[key] = value
    argv = ["new", str(dest), "--defaults", "--template", str(REPO_ROOT), "--vcs-ref", "HEAD"]
    for item in data.items():
        argv += ["--data", "=".join(item)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert key in err
    assert not dest.exists(), "a refused answer must leave nothing behind"


def test_copier_cli_from_a_clean_clone_as_the_readme_says(tmp_path: Path):
    """The README's first command, against a fresh clone of the repository."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    dest = tmp_path / "stack"
    result = subprocess.run(
        [
            "copier", "copy", "--trust", "--defaults", "--data", "domain=sso.example.test",
            "--data", "acme_email=admin@example.test", str(clone), str(dest),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (dest / "compose.yaml").is_file() and (dest / ".env").is_file()
    assert (dest / ".env").stat().st_mode & 0o777 == 0o600
    env = dotenv_values(dest / ".env")
    assert env["PG_PASS"] and env["PG_PASS"] not in result.stdout + result.stderr
    assert f"_src_path: {clone}" in (dest / ".copier-answers.yml").read_text()
