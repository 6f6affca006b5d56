"""The template a stack comes from: where it is, its version tags, and a checkout of one version.

copier stores the source (`_src_path` in the answers file) as given: the absolute path of a clone
or a git URL. `scaffold new`, `scaffold update` and doctor all read it through this module, so they
agree on what a usable source is and on which tag is the newest: tags are PEP 440 versions (`v2.0.0`),
a final release outranks its release candidates, and pre-releases are never picked as "the newest"
(as copier does without `--prereleases`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packaging.version import InvalidVersion, Version

from scaffold.errors import GitError, TemplateError
from scaffold.gitutil import git, last_line

#: Seconds to reach a remote template (ls-remote, clone).
REMOTE_TIMEOUT = 120.0
#: copier stores `git describe --tags --always`: `v1.2.0`, `v1.2.0-3-gabc1234`, or a bare hash.
_DESCRIBE = re.compile(r"^(?P<tag>.+?)(?:-(?P<ahead>\d+)-g(?P<sha>[0-9a-f]{4,40}))?$")
_HASH = re.compile(r"^[0-9a-f]{7,40}$")
_FIX_SOURCE = "point _src_path in .copier-answers.yml at the template's clone or git URL, commit, retry"


def is_url(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def tag_version(tag: str | None) -> Version | None:
    """The version a tag such as `v1.2.0` or `v2.0.0rc1` names; None when it names none (or is a hash)."""
    if not tag or (_HASH.match(tag) and not tag.isdigit()):
        return None
    try:
        return Version(tag[1:] if tag[:1] in ("v", "V") else tag)
    except InvalidVersion:
        return None


def describe_version(commit: str | None) -> tuple[Version | None, int]:
    """(version of the tag, commits after it) for copier's `_commit` (`v1.2.0-3-gabc1234` -> 1.2.0, 3)."""
    if not commit:
        return None, 0
    match = _DESCRIBE.match(commit)
    if match is None:
        return tag_version(commit), 0
    return tag_version(match.group("tag")), int(match.group("ahead") or 0)


def newest_release(tags: list[str]) -> tuple[str, Version] | None:
    """The tag of the newest final release (pre-releases and non-version tags are ignored)."""
    releases = [(version, tag) for tag in tags if (version := tag_version(tag)) and not version.is_prerelease]
    if not releases:
        return None
    version, tag = max(releases)
    return tag, version


def sorted_versions(tags: list[str]) -> list[str]:
    """The version tags, oldest first (for messages that list them)."""
    versions = [(version, tag) for tag in tags if (version := tag_version(tag)) is not None]
    return [tag for _, tag in sorted(versions)]


def source_problem(source: str) -> TemplateError | None:
    """Why a source cannot serve an update (relative, gone, not a source); None when it looks usable."""
    if source.startswith("-"):  # git would read it as an option
        return TemplateError(f"'{source}' is not a template source", hint=_FIX_SOURCE)
    if is_url(source):
        return None
    path = Path(source)
    if not path.is_absolute():
        return TemplateError(
            f"the template source '{source}' in .copier-answers.yml is a relative path, "
            "which copier cannot resolve",
            hint=_FIX_SOURCE,
        )
    if not (path / "copier.yml").is_file():
        return TemplateError(f"the template source {source} is not there any more", hint=_FIX_SOURCE)
    return None


def template_tags(source: str, *, timeout: float = REMOTE_TIMEOUT) -> list[str]:
    """The template's tags; a TemplateError saying why when the source cannot be read."""
    problem = source_problem(source)
    if problem is not None:
        raise problem
    try:
        if is_url(source):
            result = git(None, "ls-remote", "--tags", "--refs", source, check=False, timeout=timeout)
            if result.returncode != 0:
                raise TemplateError(
                    f"the template source {source} cannot be reached: {last_line(result.stderr)}",
                    hint="check the network and the URL in .copier-answers.yml (_src_path)",
                )
            lines = result.stdout.splitlines()
            return [line.split("refs/tags/", 1)[1] for line in lines if "refs/tags/" in line]
        result = git(Path(source), "tag", "--list", check=False, timeout=timeout)
    except GitError as exc:
        raise TemplateError(f"cannot read the template's versions: {exc.message}", hint=exc.hint) from None
    if result.returncode != 0:
        raise TemplateError(
            f"cannot read the tags of the template {source}: {last_line(result.stderr)}", hint=_FIX_SOURCE
        )
    return [line for line in result.stdout.splitlines() if line]


def has_ref(source: str, ref: str) -> bool:
    """True when a local template has the commit, branch or tag `ref` (a URL is left to copier)."""
    if is_url(source):
        return True
    result = git(Path(source), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return result.returncode == 0


def template_questions(source: str) -> dict[str, str] | None:
    """{question: its copier type} of a local template's copier.yml (None for a remote template)."""
    if is_url(source):
        return None
    from scaffold.yamlfile import YAMLError, read_yaml

    path = Path(source) / "copier.yml"
    try:
        data = read_yaml(path)
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise TemplateError(f"cannot read {path}: {exc}", hint=_FIX_SOURCE) from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path} is not a copier template configuration", hint=_FIX_SOURCE)
    return {
        key: str(spec.get("type", "str")) if isinstance(spec, dict) else "str"
        for key, spec in data.items()
        if isinstance(key, str) and not key.startswith("_")
    }


@contextmanager
def checkout(source: str, commit: str | None) -> Iterator[Path | None]:
    """A temporary checkout of the template at `commit`, or None when it cannot be made."""
    with tempfile.TemporaryDirectory(prefix="scaffold-template.") as tmp:
        folder = Path(tmp) / "template"
        try:
            clone = ("clone", "-q", "--no-checkout", "--", source, str(folder))
            cloned = git(Path(tmp), *clone, check=False, timeout=REMOTE_TIMEOUT)
            ok = bool(commit) and cloned.returncode == 0
            ok = ok and git(folder, "checkout", "-q", str(commit), check=False).returncode == 0
        except GitError:
            ok = False
        yield folder if ok else None
