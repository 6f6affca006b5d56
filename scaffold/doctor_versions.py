"""doctor's version checks: the authentik tag, the template version, and the release line.

The answers file is what `scaffold update` starts from; when `.env` runs another authentik release,
the next update applies authentik's upgrade rules to the wrong version. A newer template version is
how fixes reach a stack, so doctor says when one exists (as `copier check-update` would).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from scaffold import envkeys
from scaffold.doctor_core import Check, Context, Outcome, fail, ok, skip, warn

GIT_TIMEOUT = 8
#: copier stores `git describe --tags --always`: `v1.2.0`, `v1.2.0-3-gabc1234`, or a bare hash.
_DESCRIBE = re.compile(r"^(?P<tag>.+?)(?:-(?P<ahead>\d+)-g(?P<sha>[0-9a-f]{4,40}))?$")
_HASH = re.compile(r"^[0-9a-f]{7,40}$")


def parse_tag_version(tag: str) -> Any:
    """A PEP 440 version from a tag such as `v1.2.0`; None when the tag is not a version."""
    from packaging.version import InvalidVersion, Version

    if _HASH.match(tag) and not tag.isdigit():
        return None
    try:
        return Version(tag[1:] if tag[:1] in ("v", "V") else tag)
    except InvalidVersion:
        return None


def newest_tag(tags: list[str]) -> tuple[str, Any] | None:
    versions = [(version, tag) for tag in tags if (version := parse_tag_version(tag)) is not None]
    if not versions:
        return None
    version, tag = max(versions)
    return tag, version


def compare_template(commit: str | None, tags: list[str]) -> tuple[str, str, str | None]:
    """(status, message, newest tag) for the stack's `_commit` against the template's tags.

    status: "current", "behind", "ahead" (commits after the newest tag), "untagged" (no version tags),
    or "unknown" (the stack's commit is not a version).
    """
    newest = newest_tag(tags)
    if newest is None:
        return "untagged", "the template has no version tags", None
    tag, latest = newest
    if not commit:
        return "unknown", f"the answers file records no template version (_commit); the newest is {tag}", tag
    match = _DESCRIBE.match(commit)
    base = match.group("tag") if match else commit
    ahead = int(match.group("ahead") or 0) if match else 0
    current = parse_tag_version(base)
    if current is None:
        return (
            "unknown",
            f"the stack was generated from commit {commit}, not a version; the newest is {tag}",
            tag,
        )
    if current < latest:
        return "behind", f"template {tag} is available; this stack is at {commit}", tag
    if current == latest and ahead:
        return "ahead", f"this stack is at {commit}, {ahead} commit(s) after the newest version {tag}", tag
    return "current", f"this stack is at the newest template version {tag}", tag


def _is_url(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def _run_git(cwd: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
        env={
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        },
    )


def template_tags(source: str) -> tuple[list[str] | None, str | None]:
    """(tags, None), or (None, why they cannot be read)."""
    try:
        if _is_url(source):
            result = _run_git(None, "ls-remote", "--tags", "--refs", source)
            if result.returncode != 0:
                return (
                    None,
                    f"cannot reach {source}: {result.stderr.strip().splitlines()[-1:] or 'git failed'}",
                )
            return [
                line.split("refs/tags/", 1)[1] for line in result.stdout.splitlines() if "refs/tags/" in line
            ], None
        result = _run_git(Path(source), "tag", "--list")
        if result.returncode != 0:
            return None, f"cannot read the tags of {source}: {result.stderr.strip()}"
        return [line for line in result.stdout.splitlines() if line], None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot read the template's tags ({exc})"


def check_tag_matches_answers(ctx: Context) -> Outcome:
    tag = ctx.env_value(envkeys.TAG)
    answer = ctx.answers.authentik_version
    if tag is None:
        return skip(f"not checked: {envkeys.TAG} is not set in .env (see files.env-keys)")
    if tag == answer:
        return ok(f"{envkeys.TAG}={tag}, as the answers file says")
    return warn(
        f"{envkeys.TAG} in .env is {tag} but the answers file says authentik_version {answer}: the next "
        "`scaffold update` applies authentik's upgrade rules (no downgrades, no skipped lines) from the "
        "answers' version",
        f"if {tag} is what runs, record it: `scaffold update --authentik {tag}`; otherwise set "
        f"{envkeys.TAG}={answer} in .env and `docker compose up -d`",
    )


def check_template_current(ctx: Context) -> Outcome:
    source = ctx.answers.src_path
    if not source:
        return skip("not checked: the answers file has no _src_path (template source)")
    source = str(source)
    if _is_url(source) and ctx.offline:
        return skip(f"not checked: --offline, and the template source is a URL ({source})")
    if not _is_url(source):
        path = Path(source)
        if not path.is_absolute():
            return warn(
                f"the template source '{source}' in .copier-answers.yml is a relative path: updates cannot "
                "find it",
                "set _src_path in .copier-answers.yml to the template's absolute path or git URL, and commit",
            )
        if not (path / "copier.yml").is_file():
            return warn(
                f"the template source {source} is not there any more: `scaffold update` cannot run",
                "point _src_path in .copier-answers.yml at the template's current clone or URL, and commit",
            )
    tags, error = template_tags(source)
    if tags is None:
        return skip(f"not checked: {error}")
    state, message, newest = compare_template(ctx.answers.commit, tags)
    if state == "untagged":
        return skip(f"not checked: {message}")
    if state == "behind":
        return warn(
            message, f"preview with `scaffold update --dry-run`, then `scaffold update` (to {newest})"
        )
    if state == "unknown":
        return warn(
            message, f"`scaffold update --to {newest}` moves the stack to a released template version"
        )
    return ok(message)


def check_authentik_supported(ctx: Context) -> Outcome:
    from scaffold.errors import UsageError
    from scaffold.releases import (
        OLDEST_SUPPORTED,
        is_known_line,
        is_supported,
        line_name,
        parse_version,
    )

    text = ctx.env_value(envkeys.TAG) or ctx.answers.authentik_version
    where = ".env" if ctx.env_value(envkeys.TAG) else "the answers file"
    try:
        version = parse_version(text)
    except UsageError:
        return fail(
            f"authentik tag '{text}' (from {where}) is not a YEAR.MONTH.PATCH release: updates cannot follow "
            "authentik's upgrade rules, and the image may change under you",
            f"pin a release: `scaffold update --authentik <release>` (e.g. {ctx.answers.authentik_version})",
        )
    if not is_supported(version):
        return fail(
            f"authentik {version} (from {where}) is older than this template supports "
            f"({line_name(OLDEST_SUPPORTED)}): its compose file mounts ./data, which older releases do "
            "not use",
            f"upgrade through each release line in order up to {line_name(OLDEST_SUPPORTED)}: "
            f"`scaffold update --authentik {line_name(OLDEST_SUPPORTED)}.<latest patch>`",
        )
    if not is_known_line(version):
        return ok(
            f"authentik {version} is newer than the release lines this template knows; read its release notes"
        )
    return ok(f"authentik {version} is a release line this template supports")


CHECKS = (
    Check("versions.tag-matches-answers", check_tag_matches_answers),
    Check("versions.template-current", check_template_current),
    Check("versions.authentik-supported", check_authentik_supported),
)
