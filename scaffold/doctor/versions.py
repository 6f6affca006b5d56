"""doctor's version checks: the authentik tag, the template version, and the release line.

The answers file is what `scaffold update` starts from; when `.env` runs another authentik release,
the next update applies authentik's upgrade rules to the wrong version. A newer template version is
how fixes reach a stack, so doctor says when one exists (as `copier check-update` would).
"""

from __future__ import annotations

from scaffold import envkeys, template_source
from scaffold.doctor.core import Check, Context, Outcome, fail, ok, skip, warn
from scaffold.errors import TemplateError

#: Seconds doctor gives the template source to list its tags (doctor must stay fast).
GIT_TIMEOUT = 8.0


def compare_template(commit: str | None, tags: list[str]) -> tuple[str, str, str | None]:
    """(status, message, newest tag) for the stack's `_commit` against the template's tags.

    status: "current", "behind", "ahead" (commits after the newest tag), "untagged" (no version tags),
    or "unknown" (the stack's commit is not a version).
    """
    newest = template_source.newest_release(tags)
    if newest is None:
        return "untagged", "the template has no version tags", None
    tag, latest = newest
    if not commit:
        return "unknown", f"the answers file records no template version (_commit); the newest is {tag}", tag
    current, ahead = template_source.describe_version(commit)
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
    if template_source.is_url(source) and ctx.offline:
        return skip(f"not checked: --offline, and the template source is a URL ({source})")
    problem = template_source.source_problem(source)
    if problem is not None:
        return warn(f"{problem.message}: `scaffold update` cannot run", problem.hint)
    try:
        tags = template_source.template_tags(source, timeout=GIT_TIMEOUT)
    except TemplateError as exc:
        return skip(f"not checked: {exc.message}")
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
