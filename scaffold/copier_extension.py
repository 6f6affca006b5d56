"""The answer rules (answer_rules.py beside this file), as Jinja globals and filters for copier.

copier.yml lists this file by path (`scaffold/copier_extension.py:AnswerRules`, loaded by
copier-template-extensions' TemplateExtensionLoader), so copier takes it from the template's own
checkout, and this file loads answer_rules.py from that same checkout by path, never through
`import scaffold`: the scaffold installed in copier's environment may be another version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import weakref
from pathlib import Path
from types import CodeType, ModuleType

from jinja2 import Environment
from jinja2.ext import Extension
from jinja2.nodes import Template as TemplateNode

RULES_FILE = Path(__file__).resolve().with_name("answer_rules.py")


def load_rules(path: Path = RULES_FILE) -> ModuleType:
    """answer_rules.py from this checkout, under a name of its own content: two template versions
    in one process (copier's update renders both) never share a module."""
    source = path.read_bytes()
    name = f"_scaffold_answer_rules_{hashlib.sha256(source).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def scaffold_claims_task() -> bool:
    """True when `scaffold new` runs copier in this process with this checkout's own code, and so
    runs the hook itself after the copy (copier.yml's task `when:`; see scaffold/inprocess.py).

    Found through `sys.modules` only, never imported: plain copier has no scaffold loaded, and any
    failure (an older scaffold without that module or function) leaves the task to copier.
    """
    inprocess = sys.modules.get("scaffold.inprocess")
    if inprocess is None:
        return False
    try:
        return bool(inprocess.claim_task(RULES_FILE.parent))
    except Exception:
        return False


_CompileKey = tuple[str, "str | None", "str | None", bool, bool]

#: Compiled templates per environment, for `remember_compiled_templates`. Weak keys: an
#: environment copier drops takes its compiled templates with it.
_COMPILED: weakref.WeakKeyDictionary[Environment, dict[_CompileKey, str | CodeType]] = (
    weakref.WeakKeyDictionary()
)
_CACHING_CLASSES: dict[type[Environment], type[Environment]] = {}


def remember_compiled_templates(environment: Environment) -> None:
    """Compile each template string once per environment instead of on every render.

    copier renders every path, question default, validator and `when:` through `from_string`,
    which Jinja compiles anew each time (its own cache holds only templates read through a
    loader); most strings come back many times in one run, and compiling was about half of the
    in-process time of a `copier update`. The environment's class becomes a subclass whose
    `compile` looks the string up first. The cache belongs to one environment, whose settings
    Jinja documents as fixed once templates load; an `overlay()` gets a cache of its own.
    """
    base = type(environment)
    if base in _CACHING_CLASSES.values():
        return  # already compiling once
    if base not in _CACHING_CLASSES:
        _CACHING_CLASSES[base] = _compiling_once(base)
    environment.__class__ = _CACHING_CLASSES[base]


def _compiling_once(base: type[Environment]) -> type[Environment]:
    class CompilingOnce(base):  # type: ignore[valid-type,misc]
        def compile(  # type: ignore[override]
            self,
            source: str | TemplateNode,
            name: str | None = None,
            filename: str | None = None,
            raw: bool = False,
            defer_init: bool = False,
        ) -> str | CodeType:
            if not isinstance(source, str):  # an already parsed template: nothing to look it up by
                return super().compile(source, name, filename, raw, defer_init)
            compiled = _COMPILED.setdefault(self, {})
            key = (source, name, filename, raw, defer_init)
            if key not in compiled:  # a template that fails to compile is not kept: it fails again
                compiled[key] = super().compile(source, name, filename, raw, defer_init)
            return compiled[key]

    CompilingOnce.__name__ = CompilingOnce.__qualname__ = base.__name__
    return CompilingOnce


class AnswerRules(Extension):
    """Adds `problem_with(question, answer, **other_answers)` and the filters the templates use,
    and `scaffold_claims_task()` for the task's `when:`."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        rules = load_rules()
        environment.globals.update(rules.TEMPLATE_GLOBALS)
        environment.globals["scaffold_claims_task"] = scaffold_claims_task
        environment.filters.update(rules.TEMPLATE_FILTERS)
        remember_compiled_templates(environment)
