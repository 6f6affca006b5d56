"""`scaffold update` and the web_path / upstream_proxies answers, against throwaway template repos.

What a user sees: Cloudflare's ranges follow the template (a new release brings the new list into
the project), changing either answer later re-renders exactly what depends on it and keeps their
edits, a bad new answer is refused with the project left as it was, and a project made by the
previous release (which did not ask these questions) updates to this one without a conflict.
"""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest
from dotenv import dotenv_values

from scaffold.cli import main
from scaffold.subnets import trusted_cidrs, trusted_ranges
from tests.helpers.projects import commit, new_project, snapshot, user_edits
from tests.helpers.templaterepo import edit, git, make_template_repo, previous_release_repo, release

RANGES = "template/nginx/snippets/cloudflare-ranges.conf"


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    return make_template_repo(tmp_path / "template")


def test_update_refreshes_cloudflare_ranges(tmp_path: Path, template_repo: Path, capsys) -> None:
    project = new_project(tmp_path / "sso", template_repo, "upstream_proxies=cloudflare")
    user_edits(project)
    # v2 of the template: Cloudflare dropped one range and published a new one.
    edit(template_repo, RANGES, "set_real_ip_from 131.0.72.0/22;\n", "set_real_ip_from 198.18.0.0/15;\n")
    release(template_repo, "v2.0.0")

    assert main(["update", str(project)]) == 0, capsys.readouterr().err
    ranges = (project / "nginx/snippets/cloudflare-ranges.conf").read_text()
    assert ranges == (template_repo / RANGES).read_text(), "the project did not get v2's list"
    assert "131.0.72.0/22" not in ranges and "198.18.0.0/15" in ranges
    assert (
        "include /etc/nginx/snippets/cloudflare-ranges.conf;"
        in (project / "nginx/snippets/real-ip.conf").read_text()
    )
    assert "client_max_body_size 256m;" in (project / "nginx/conf.d/authentik.conf").read_text()


def test_changing_the_answers_later_rerenders_what_depends_on_them(
    tmp_path: Path, template_repo: Path, capsys
) -> None:
    project = new_project(tmp_path / "sso", template_repo)
    user_edits(project)
    argv = ["update", str(project), "--data", "web_path=/auth/", "--data", "upstream_proxies=192.0.2.10"]
    assert main(argv) == 0, capsys.readouterr().err

    compose = (project / "compose.yaml").read_text()
    assert 'AUTHENTIK_WEB__PATH: "/auth/"' in compose
    site = (project / "nginx/conf.d/authentik.conf").read_text()
    assert "location ^~ /auth/ {" in site and "client_max_body_size 256m;" in site
    assert (project / "nginx/custom/site-root.conf").is_file()
    assert (project / "nginx/custom/authentik.d/mine.conf").read_text() == "location /mine { return 204; }\n"
    real_ip = (project / "nginx/snippets/real-ip.conf").read_text()
    assert "set_real_ip_from 192.0.2.10;" in real_ip and "real_ip_header X-Forwarded-For;" in real_ip
    answers = (project / ".copier-answers.yml").read_text()
    assert "web_path: /auth/" in answers and "upstream_proxies: 192.0.2.10" in answers

    # Back to the whole host name: authentik's `location /` again; the user's site-root.conf, with
    # their site in it, stays on disk but is no longer included (two `location /` would not load).
    site_root = project / "nginx/custom/site-root.conf"
    site_root.write_text(site_root.read_text().replace("return 404;", "root /srv/www;"))
    commit(project, "my site")
    argv = ["update", str(project), "--data", "web_path=/", "--data", "upstream_proxies="]
    assert main(argv) == 0, capsys.readouterr().err
    site = (project / "nginx/conf.d/authentik.conf").read_text()
    assert (
        "    location / {" in site and "site-root.conf" not in site and "client_max_body_size 256m;" in site
    )
    assert "root /srv/www;" in site_root.read_text()
    assert "AUTHENTIK_WEB__PATH:" not in (project / "compose.yaml").read_text()
    assert "set_real_ip_from" not in (project / "nginx/snippets/real-ip.conf").read_text()


def test_public_url_follows_a_new_port_unless_it_was_chosen(
    tmp_path: Path, template_repo: Path, capsys
) -> None:
    """copier keeps stored answers: a default public URL must still follow `https_port` and `domain`."""
    project = new_project(tmp_path / "sso", template_repo)

    def update(answer: str) -> str:
        assert main(["update", str(project), "--data", answer]) == 0, capsys.readouterr().err
        commit(project, f"update {answer}")
        compose = (project / "compose.yaml").read_text()
        return compose.split("AUTHENTIK_WEB__BASE_URL: ", 1)[1].split("\n", 1)[0]

    assert update("https_port=8443") == "https://sso.example.test:8443"
    assert update("public_url=https://sso.example.test") == "https://sso.example.test"
    assert update("https_port=9443") == "https://sso.example.test", "a chosen public URL was replaced"
    assert update("domain=login.example.test") == "https://login.example.test"
    assert "public_url: https://login.example.test" in (project / ".copier-answers.yml").read_text()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("upstream_proxies=0.0.0.0/0", "every IPv4 address"),
        ("web_path=auth", "must start and end with '/'"),
        ("public_url=https://other.example.test", "is not on the domain"),
    ],
)
def test_bad_new_answer_on_update_is_refused_and_changes_nothing(
    tmp_path: Path, template_repo: Path, capsys, answer: str, message: str
) -> None:
    project = new_project(tmp_path / "sso", template_repo)
    before = snapshot(project)
    assert main(["update", str(project), "--data", answer]) != 0
    err = capsys.readouterr().err
    assert message in err, err
    assert snapshot(project) == before


def test_previous_release_updates_to_this_one_without_conflicts(tmp_path: Path, capsys) -> None:
    """A project of the last release gets the new files and defaults; nothing else of it changes.

    It publishes HTTPS on 8443, so its browsers open https://DOMAIN:8443: the new public_url answer
    defaults to exactly that, and authentik's base URL and the HTTP redirect stay as they were.
    """
    repo = previous_release_repo(tmp_path / "template")
    project = new_project(tmp_path / "sso", repo, "https_port=8443")
    user_edits(project)
    base_url = "AUTHENTIK_WEB__BASE_URL: https://sso.example.test:8443\n"
    assert base_url in (project / "compose.yaml").read_text()
    redirect = "return 301 https://sso.example.test:8443$request_uri;"
    assert redirect in (project / "nginx/conf.d/authentik.conf").read_text()
    # This version, as the next release of that template.
    fresh = make_template_repo(tmp_path / "current")
    for item in repo.iterdir():
        if item.name != ".git":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in fresh.iterdir():
        if item.name != ".git":
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, repo / item.name)
    release(repo, "v2.0.0")
    # v1.0.0's scaffold trusted the whole proxy subnet, gateway (the Docker host) included.
    env = project / ".env"
    subnet = dotenv_values(env)["PROXY_SUBNET"]
    trusted = dotenv_values(env)["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"]
    env.write_text(env.read_text().replace(f"PROXY_CIDRS={trusted}\n", f"PROXY_CIDRS={subnet}\n"))

    assert main(["update", str(project)]) == 0, capsys.readouterr().err
    migrated = dotenv_values(env)["AUTHENTIK_LISTEN__TRUSTED_PROXY_CIDRS"]
    assert migrated == trusted_cidrs(trusted_ranges([ipaddress.ip_network(subnet)])), migrated
    status = git(project, "status", "--porcelain")
    assert "<<<<<<<" not in "".join(p.read_text() for p in project.rglob("*.conf")), status
    assert not list(project.rglob("*.rej")), status
    answers = (project / ".copier-answers.yml").read_text()
    assert "web_path: /" in answers and "upstream_proxies: ''" in answers
    site = (project / "nginx/conf.d/authentik.conf").read_text()
    assert site.count("include /etc/nginx/snippets/real-ip.conf;") == 2
    assert "client_max_body_size 256m;" in site and "    location / {" in site
    assert (project / "nginx/snippets/real-ip.conf").is_file()
    assert (project / "nginx/custom/site-root.conf").is_file() and "site-root.conf" not in site
    assert "AUTHENTIK_WEB__PATH:" not in (project / "compose.yaml").read_text()
    # public_url: no answer needed, the behaviour is kept; nginx now passes the Host as sent.
    assert "public_url: https://sso.example.test:8443" in answers
    assert base_url in (project / "compose.yaml").read_text()
    assert redirect in site
    proxy = (project / "nginx/snippets/proxy-authentik.conf").read_text()
    assert "proxy_set_header Host $scaffold_site_host;" in proxy and "$host:8443" not in proxy
