"""The template's Jinja extension compiles each template string once per copier environment
(scaffold/copier_extension.py `remember_compiled_templates`), and nothing a user gets changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import copier
import jinja2
import jinja2.compiler
import pytest
from jinja2.sandbox import SandboxedEnvironment

from tests.helpers.copierenv import copier_jinja_env
from tests.helpers.templaterepo import edit, make_template_repo, release

ANSWERS = {
    "domain": "sso.example.test",
    "acme_email": "admin@example.test",
    "web_path": "/auth/",
    "enable_ipv6": True,
}


@pytest.fixture(scope="module")
def jinja_env(tmp_path_factory) -> Iterator:
    with copier_jinja_env(tmp_path_factory.mktemp("dst")) as env:
        yield env


@pytest.fixture
def compilations(monkeypatch) -> list[str]:
    """The template sources Jinja's code generator is asked to compile, in order."""
    seen: list[str] = []
    generate = jinja2.compiler.generate

    def counting(node, environment, name, filename, *args, **kwargs):
        seen.append(name or "<string>")
        return generate(node, environment, name, filename, *args, **kwargs)

    monkeypatch.setattr(jinja2.environment, "generate", counting)
    return seen


def test_a_string_rendered_again_is_not_compiled_again(jinja_env, compilations):
    source = "{{ domain | upper }} {{ 'x' if web_path else 'y' }} {{ __unique_1 | default(1) }}"
    outputs = [jinja_env.from_string(source).render(domain=d, web_path=d) for d in ("a.test", "", "b.test")]
    assert outputs == ["A.TEST x 1", " y 1", "B.TEST x 1"]
    assert len(compilations) == 1
    jinja_env.from_string(source + " ").render()
    assert len(compilations) == 2  # another string is compiled


def test_the_environment_keeps_its_sandbox(jinja_env):
    assert isinstance(jinja_env, SandboxedEnvironment)
    template = jinja_env.from_string("{{ ''.__class__.__mro__ }}")
    with pytest.raises(jinja2.exceptions.SecurityError):
        template.render()
    with pytest.raises(jinja2.exceptions.SecurityError):  # and again, from the cache
        jinja_env.from_string("{{ ''.__class__.__mro__ }}").render()


def test_a_template_that_does_not_compile_fails_every_time(jinja_env):
    for _ in range(2):
        with pytest.raises(jinja2.TemplateSyntaxError):
            jinja_env.from_string("{% if %}")


def test_an_overlay_with_other_delimiters_does_not_take_the_parent_s_compiled_code(jinja_env):
    source = "[[ name ]] {{ name }}"
    assert jinja_env.from_string(source).render(name="n") == "[[ name ]] n"
    overlay = jinja_env.overlay(variable_start_string="[[", variable_end_string="]]")
    assert overlay.from_string(source).render(name="n") == "n {{ name }}"
    assert jinja_env.from_string(source).render(name="n") == "[[ name ]] n"


def test_a_generated_project_is_byte_identical_without_the_cache(tmp_path: Path):
    """The same answers through this template and through a copy whose extension does not cache."""
    cached = make_template_repo(tmp_path / "cached")
    uncached = make_template_repo(tmp_path / "uncached")
    edit(uncached, "scaffold/copier_extension.py", "        remember_compiled_templates(environment)\n", "")
    release(uncached, "v1.0.1")
    projects = {}
    for template in (cached, uncached):
        project = tmp_path / f"from-{template.name}" / "sso"  # the folder name is the Compose project name
        copier.run_copy(str(template), str(project), data=ANSWERS, defaults=True, unsafe=True, quiet=True,
                        skip_tasks=True)  # fmt: skip
        projects[template.name] = {
            path.relative_to(project).as_posix(): path.read_bytes()
            for path in sorted(project.rglob("*"))
            if path.is_file() and path.name != ".copier-answers.yml"
        }
    assert len(projects["cached"]) > 20
    assert projects["cached"] == projects["uncached"]
