"""The rendered stack, checked with the real tools: Compose v2 and nginx (a stand-in image).

Each variant a user can choose is rendered through copier (tasks included, so `.env` is the
hook's), then `docker compose config` must accept it and `nginx -t` must pass in a real nginx.
Every bad answer must be refused at the question with a message that says what is wrong.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import re
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from scaffold.cli import main
from scaffold.subnets import trusted_cidrs, trusted_ranges
from tests.helpers.requirements import compose_available, require
from tests.helpers.stack import DOMAIN, REPO_ROOT, docker, generate, unique_name

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
    # Issue 17: DNS-01 with a wildcard and no HTTP port; and the Cloudflare plugin.
    "dns-rfc2136": {
        "acme_challenge": "dns",
        "acme_wildcard": True,
        "acme_rfc2136_server": "192.0.2.53",
        "acme_rfc2136_key_name": "certbot.",
        "acme_dns_secret": "c2VjcmV0LXRzaWcta2V5LWJ5dGVz",
        "http_port": 0,
    },
    "dns-cloudflare": {
        "acme_challenge": "dns",
        "acme_dns_provider": "cloudflare",
        "acme_dns_propagation_seconds": 30,
        "acme_dns_secret": "Abc_def-1234567890abcdefghijklmnopqrstuv",
    },
    "web-path": {"web_path": "/auth/", "https_port": 8443},
    # A router takes public port 443 to host port 8443: users open https://DOMAIN.
    "behind-router": {"https_port": 8443, "public_url": f"https://{DOMAIN}"},
    "upstream-proxies": {"upstream_proxies": "192.0.2.10, 198.51.100.0/24 2001:db8::/48"},
    "cloudflare": {"upstream_proxies": "cloudflare, 10.20.30.0/24"},
    # Issue 15: apps behind forward auth (nginx's file per app, the blueprint, certbot's host list).
    "apps": {
        "https_port": 8443,
        "apps": {
            "web": {
                "host": "web.example.test",
                "upstream": "http://echo:8080",
                "bypass": ["/api/"],
                "group": "staff",
            },
            "nas": {
                "host": "nas.other.example",
                "upstream": "https://192.0.2.20:5001",
                "websockets": False,
                "identity_headers": False,
            },
        },
    },
    # Review items 5 and 7: `$`, quotes and a numeric project name (the folder's) reach compose.yaml.
    "odd-answers": {
        "acme_email": "o'brien+$PG_PASS{x}@example.test",
        "acme_server": "https://acme.example.test:14000/dir/$PG_PASS?a='b'&c=%41",
    },
}
#: The folder a variant is generated in (its name is the default project name).
FOLDERS = {"odd-answers": "2024"}
SERVICES = {"postgresql", "server", "worker", "nginx", "certbot"}


def compose_config(project: Path) -> dict:
    """What `docker compose config` makes of the project: asked again only when compose.yaml or
    .env changed (the module's tests read the same rendered variants; a Compose start costs
    ~0.15 s of CPU)."""
    require(compose_available(), "`docker compose` v2 is not installed")
    inputs = tuple((project / name).read_bytes() for name in ("compose.yaml", ".env"))
    return json.loads(_compose_config_json(project, inputs))


@functools.cache
def _compose_config_json(project: Path, inputs: tuple[bytes, ...]) -> str:
    result = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    folder = FOLDERS.get(name, unique_name("tpl"))
    project = generate(tmp_path_factory.mktemp(name) / folder, VARIANTS[name])
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
    assert ports == {(str(https), 443)} | ({(str(http), 80)} if http else set())  # 0: no HTTP port


def test_compose_project_name_is_the_answer_even_when_yaml_would_read_a_number(rendered):
    """Review item 7: a folder named `2024` gave `name: 2024`, which Compose refuses ("must be a string")."""
    _, project = rendered
    assert compose_config(project)["name"] == project.name


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
    # The proxy subnets without their gateway (the Docker host): see scaffold.subnets.trusted_ranges.
    ranges = trusted_ranges(ipaddress.ip_network(subnet) for subnet in expected)
    assert env["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"] == trusted_cidrs(ranges)
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


def test_certbot_gets_the_dns_plugin_its_credentials_and_the_names_only_with_dns(rendered):
    """Issue 17: the plugin's image, its settings, a 0600 credentials file from .env, no port 80 if asked."""
    name, project = rendered
    config = compose_config(project)
    certbot, nginx = config["services"]["certbot"], config["services"]["nginx"]
    credentials = project / ".scaffold" / "dns" / "credentials.ini"
    published = {port["target"] for port in nginx["ports"]}
    if not name.startswith("dns-"):
        assert (
            certbot["image"].startswith("certbot/certbot:") and "ACME_CHALLENGE" not in certbot["environment"]
        )
        assert not credentials.exists() and published == {80, 443}
        return
    answers = VARIANTS[name]
    provider = answers.get("acme_dns_provider", "rfc2136")
    assert certbot["image"].startswith(f"certbot/dns-{provider}:")
    environment = certbot["environment"]
    assert environment["ACME_CHALLENGE"] == "dns" and environment["DNS_PLUGIN"] == provider
    assert environment["DNS_PROPAGATION_SECONDS"] == str(answers.get("acme_dns_propagation_seconds", 60))
    assert environment.get("CERT_WILDCARD") == ("true" if answers.get("acme_wildcard") else None)
    mount = next(v for v in certbot["volumes"] if v["target"] == "/run/scaffold-dns")
    assert mount["source"] == str(credentials.parent) and mount.get("read_only") is True
    assert all(v["target"] != "/run/scaffold-dns" for v in nginx["volumes"]), "nginx must not see the secret"
    assert published == ({443} if answers.get("http_port") == 0 else {80, 443})
    secret = answers["acme_dns_secret"]
    assert (
        dotenv_values(project / ".env")[
            f"CERTBOT_{provider.upper()}_{'SECRET' if provider == 'rfc2136' else 'API_TOKEN'}"
        ]
        == secret
    )
    assert credentials.stat().st_mode & 0o777 == 0o600 and credentials.parent.stat().st_mode & 0o777 == 0o700
    assert f"= {secret}\n" in credentials.read_text()
    if provider == "rfc2136":
        assert "dns_rfc2136_server = 192.0.2.53" in credentials.read_text()
    assert not (project / ".scaffold" / "dns-secret").exists(), "the secret's hand-off file was left behind"
    outside_env = "".join(
        p.read_text(errors="replace")
        for p in project.rglob("*")
        if p.is_file() and p.name != ".env" and p != credentials and "backups" not in p.parts
    )
    assert secret not in outside_env


def test_detect_rewrites_the_credentials_file_when_env_changes_and_removes_it_for_http(tmp_path: Path):
    project = generate(tmp_path / "dns", VARIANTS["dns-rfc2136"])
    credentials = project / ".scaffold" / "dns" / "credentials.ini"
    env = project / ".env"
    env.write_text(
        env.read_text().replace(VARIANTS["dns-rfc2136"]["acme_dns_secret"], "bmV3LXNlY3JldC12YWx1ZQ==")
    )
    assert main(["detect", str(project)]) == 0
    assert "dns_rfc2136_secret = bmV3LXNlY3JldC12YWx1ZQ==\n" in credentials.read_text()
    assert credentials.stat().st_mode & 0o777 == 0o600
    answers = project / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("acme_challenge: dns", "acme_challenge: http"))
    assert main(["detect", str(project)]) == 0
    assert not credentials.exists(), "a secret no service needs is one copy too many"


def test_docker_socket_only_when_asked(rendered):
    name, project = rendered
    worker = compose_config(project)["services"]["worker"]
    mounts = [v.get("source", "") for v in worker.get("volumes", [])]
    if name == "docker-socket":
        assert "/var/run/docker.sock" in mounts and worker.get("user") == "root"
    else:
        assert all("docker.sock" not in m for m in mounts) and worker.get("user") != "root"
        assert not any("docker.sock" in str(spec) for spec in compose_config(project)["services"].values())


def test_certbot_gets_the_acme_server_and_email_exactly_as_answered(rendered):
    """Review item 5: `$PG_PASS` in an answer must stay literal, never become the password."""
    name, project = rendered
    config = compose_config(project)
    environment = config["services"]["certbot"]["environment"]
    expected = VARIANTS[name].get("acme_server", "https://acme-v02.api.letsencrypt.org/directory")
    # `docker compose config` prints a literal `$` as `$$` (its output is itself a compose file).
    assert environment["ACME_SERVER"].replace("$$", "$") == expected
    assert environment["ACME_EMAIL"].replace("$$", "$") == VARIANTS[name].get(
        "acme_email", "admin@example.test"
    )
    assert dotenv_values(project / ".env")["PG_PASS"] not in json.dumps(environment)


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
    """`nginx -t` in a real nginx, with the stack's mounts and a certificate where certbot puts it.

    Through the image's entrypoint, as the stack starts nginx: its entrypoint.d scripts choose the
    certificate nginx reads (snippets/tls.conf).
    """
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
        *(
            (f"nginx/entrypoint.d/{script}", f"/docker-entrypoint.d/{script}")
            for script in ("40-scaffold-wait-for-certificate.sh", "50-scaffold-reload-on-renewal.sh")
        ),
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


#: A few refusals through a whole `scaffold new` (all the others: test_answer_rules.py, directly).
BAD_ANSWERS = [
    (["domain=sso.example.test\n"], "has spaces or a line break"),  # review item 6
    (['acme_email=a"b@example.test'], "not a valid e-mail address"),  # review item 5
    (["project_name=My Stack"], "not a valid Compose project name"),
    (["upstream_proxies=:::"], "not an IPv6 address or CIDR"),  # review item 8
    # Issue 14: the Jinja copies of the network rules let these three through.
    (["proxy_subnet=010.1.2.0/28"], "leading zeros are not permitted"),
    (["enable_ipv6=true", "proxy_subnet_v6=fd12:3456:789a:1::1/64"], "did you mean fd12:3456:789a:1::/64?"),
    (["enable_ipv6=true", "proxy_subnet_v6=fd::::/64"], "at most one '::'"),
    # Issue 17: DNS-01 answers.
    (["acme_challenge=dns", "acme_dns_provider=route66"], "not a DNS provider this template supports"),
    (["acme_wildcard=true"], "needs the DNS challenge"),
    (
        [
            "acme_challenge=dns",
            "acme_rfc2136_server=192.0.2.53",
            "acme_rfc2136_key_name=k.",
            "acme_dns_secret=",
        ],
        "TSIG secret is missing",
    ),
    (["acme_challenge=dns", "acme_dns_provider=cloudflare", "acme_dns_secret="], "API token is missing"),
    (["acme_challenge=dns", "acme_dns_secret=c2VjcmV0LXRzaWc=", "acme_rfc2136_server="], "not an IP address"),
    (["http_port=0"], "HTTP-01 check nothing to reach"),
]


def _new(dest: Path, answers: list[str], template: Path = REPO_ROOT) -> int:
    argv = ["new", str(dest), "--defaults", "--template", str(template), "--vcs-ref", "HEAD"]
    for item in ["domain=sso.example.test", "acme_email=admin@example.test", *answers]:
        argv += ["--data", item]
    return main(argv)


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS)
def test_bad_answer_is_refused_at_the_question_and_nothing_is_written(
    tmp_path: Path, capsys, answers, message
):
    dest = tmp_path / "sso"
    assert _new(dest, answers) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert answers[-1].partition("=")[0] in err
    assert not dest.exists(), "a refused answer must leave nothing behind"


@pytest.mark.docker
def test_a_subnet_that_overlaps_a_docker_network_is_refused_before_anything_is_written(tmp_path, capsys):
    assert _new(tmp_path / "sso", ["proxy_subnet=172.17.0.0/28"]) == 2
    assert "overlaps 172.17.0.0/16" in capsys.readouterr().err
    assert not (tmp_path / "sso").exists()


@pytest.fixture(scope="module")
def existing_project(tmp_path_factory) -> Path:
    """A project generated by `scaffold new` from a tagged copy of this template, committed."""
    from tests.helpers.templaterepo import make_template_repo

    base = tmp_path_factory.mktemp("existing")
    template = make_template_repo(base / "template")
    dest = base / "sso"
    assert _new(dest, [f"project_name={unique_name('ex')}"], template=template) == 0
    return dest


def _project_files(project: Path) -> dict[str, bytes]:
    """Every file of the project but git's and scaffold's own (backups are made before the update)."""
    return {
        str(path.relative_to(project)): path.read_bytes()
        for path in project.rglob("*")
        if path.is_file() and not {".git", ".scaffold"} & set(path.relative_to(project).parts)
    }


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS[-3:])
def test_bad_network_answer_to_an_existing_project_is_refused_and_nothing_changes(
    existing_project: Path, capsys, answers, message
):
    before = _project_files(existing_project)
    argv = ["update", str(existing_project)]
    for item in answers:
        argv += ["--data", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert _project_files(existing_project) == before


def test_update_names_an_answer_the_previous_release_let_through_instead_of_dropping_it(tmp_path, capsys):
    """The previous release's Jinja validator accepted `proxy_subnet=010.1.2.0/28`; scaffold new now
    says the project is not ready (its .env lacks the subnet). copier would replace the answer with
    the default without a word on update: scaffold names it, and a new value repairs the project."""
    import shutil

    from tests.helpers.templaterepo import make_template_repo, previous_release_repo, release

    repo = previous_release_repo(tmp_path / "template")
    project = tmp_path / "sso"
    answers = [f"project_name={unique_name('st')}", "proxy_subnet=010.1.2.0/28"]
    argv = ["new", str(project), "--defaults", "--template", str(repo), "--vcs-ref", "v1.0.0"]
    for item in ["domain=sso.example.test", "acme_email=admin@example.test", *answers]:
        argv += ["--data", item]
    assert main(argv) == 1
    assert "PROXY_SUBNET" in capsys.readouterr().err.split(".env lacks ", 1)[1].split(", which")[0]
    current = make_template_repo(tmp_path / "current")  # this version, as that template's next release
    for item in repo.iterdir():
        if item.name != ".git":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in current.iterdir():
        if item.name != ".git":
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, repo / item.name)
    release(repo, "v2.0.0")

    before = _project_files(project)
    assert main(["update", str(project)]) == 2
    err = capsys.readouterr().err
    assert "'010.1.2.0/28' is not an IPv4 CIDR" in err and "--data proxy_subnet=..." in err, err
    assert _project_files(project) == before
    assert main(["update", str(project), "--data", "proxy_subnet=auto"]) == 0, capsys.readouterr().err
    assert dotenv_values(project / ".env")["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"]


def test_a_template_checkout_validates_with_its_own_rules(tmp_path: Path, capsys):
    """copier loads the rules from the template it renders, not from the installed scaffold."""
    from scaffold.answer_rules import problem_with
    from tests.helpers.templaterepo import edit, make_template_repo, release

    template = make_template_repo(tmp_path / "template")
    edit(
        template,
        "scaffold/answer_rules.py",
        "def check_domain(value: str) -> None:\n",
        "def check_domain(value: str) -> None:\n"
        "    if value == 'sso.example.test':\n"
        "        raise AnswerProblem('this template version refuses sso.example.test', 'use another')\n",
    )
    release(template, "v1.1.0")
    assert problem_with("domain", "sso.example.test") == "", "the installed rules accept it"
    assert _new(tmp_path / "refused", [], template=template) == 2
    assert "this template version refuses sso.example.test" in capsys.readouterr().err
    # And this checkout, in the same process, still validates with its own rules.
    generate(tmp_path / "accepted", {}, skip_tasks=True)
    assert (tmp_path / "accepted" / "compose.yaml").is_file()


@pytest.mark.docker
def test_scaffold_new_fails_when_the_hook_left_env_without_a_key_compose_needs(tmp_path: Path, capsys):
    """Issue 14: `ok generated` was printed while .env lacked the trusted CIDRs (the `:?` guard then
    stopped `docker compose up`). Here the IPv6 subnet asked for is taken by another Docker network."""
    import random

    taken = f"fd{random.getrandbits(40):010x}"
    taken = f"{taken[:4]}:{taken[4:8]}:{taken[8:]}::/64"
    network = unique_name("taken")
    v4 = f"10.254.{random.randrange(256)}.{random.randrange(16) * 16}/28"
    docker("network", "create", "--ipv6", "--subnet", v4, "--subnet", taken, network)
    try:
        dest = tmp_path / "sso"
        code = _new(
            dest, ["enable_ipv6=true", f"proxy_subnet_v6={taken}", f"project_name={unique_name('mk')}"]
        )
    finally:
        docker("network", "rm", network, check=False)
    captured = capsys.readouterr()
    assert code == 1
    missing = captured.err.split(".env lacks ", 1)[1].split(", which compose.yaml needs")[0]
    assert set(missing.split(", ")) == {"PROXY_SUBNET_V6", "AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"}
    assert "ok    generated" not in captured.out + captured.err
    assert (dest / "compose.yaml").is_file(), "the files are kept"


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


def test_plain_copier_keeps_the_dns_secret_out_of_its_output_and_the_answers_file(tmp_path: Path):
    """Issue 17: with plain copier the secret passes through the hand-off file, never through output."""
    secret = "c2VjcmV0LWZvci1jb3BpZXItb25seQ=="
    dest = tmp_path / "stack"
    data = {
        "domain": DOMAIN,
        "acme_email": "admin@example.test",
        "acme_challenge": "dns",
        "acme_rfc2136_server": "192.0.2.53",
        "acme_rfc2136_key_name": "certbot.",
        "acme_dns_secret": secret,
    }
    argv = ["copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD"]
    for key, value in data.items():
        argv += ["--data", f"{key}={value}"]
    result = subprocess.run([*argv, str(REPO_ROOT), str(dest)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert dotenv_values(dest / ".env")["CERTBOT_RFC2136_SECRET"] == secret
    assert secret not in (dest / ".copier-answers.yml").read_text()
    assert not (dest / ".scaffold" / "dns-secret").exists()
    assert (dest / ".scaffold").stat().st_mode & 0o777 == 0o700
