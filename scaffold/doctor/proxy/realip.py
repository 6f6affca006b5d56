"""doctor's check of who may tell nginx the client's address (nginx's real-IP settings).

With proxies in front of nginx (a load balancer, a router, Cloudflare), nginx takes the client's
address from their header, and must take it from them only: anybody inside a `set_real_ip_from`
range can choose the address nginx logs and passes to authentik (audit log, reputation, rate
limits). The template renders nginx/snippets/real-ip.conf from the `upstream_proxies` answer; this
check reads what nginx will load and compares it with the answer. No network, no running stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scaffold.answer_rules import BROADEST_UPSTREAM_PREFIX
from scaffold.doctor.core import RELOAD, Context, Outcome, fail, ok, skip, warn
from scaffold.doctor.upstream import (
    ANSWER,
    CLOUDFLARE_CONF,
    UpstreamAnswer,
    directives,
    parse_range,
    read_text,
)
from scaffold.subnets import Network

REAL_IP_CONF = "nginx/snippets/real-ip.conf"
SITE_CONF = "nginx/conf.d/authentik.conf"
#: The folders compose.yaml mounts into the nginx container, for following `include`.
MOUNTS = (
    ("/etc/nginx/snippets/", "nginx/snippets/"),
    ("/etc/nginx/conf.d/", "nginx/conf.d/"),
    ("/etc/nginx/custom/", "nginx/custom/"),
)
RERENDER = (
    f"the template renders {REAL_IP_CONF} from the upstream_proxies answer: restore it with "
    f"`git checkout -- {REAL_IP_CONF}` (`git diff nginx/` shows hand edits), and change the answer with "
    "`scaffold update --data upstream_proxies='ADDRESS, ...'`"
)


@dataclass(frozen=True)
class Trusted:
    """One `set_real_ip_from`: as written, as a network (None: not an address range), and where."""

    text: str
    network: Network | None
    source: str

    def __str__(self) -> str:
        return f"{self.text} (in {self.source})"


@dataclass
class RealIpSettings:
    """The real-IP directives nginx loads for the authentik site."""

    ranges: list[Trusted] = field(default_factory=list)
    header: str | None = None
    recursive: bool = False
    cloudflare_included: bool = False
    #: None: not included; "missing", "empty" or "ok".
    cloudflare_state: str | None = None
    #: Includes doctor cannot read (outside the project's nginx folders, or missing).
    unreadable_includes: list[str] = field(default_factory=list)
    #: Whether nginx/conf.d/authentik.conf includes real-ip.conf (True when that file is absent).
    included_in_site: bool = True


def _project_paths(root: Path, argument: str) -> list[Path] | None:
    """The project files an `include` argument names (a glob may name none); None: outside them."""
    target = argument if argument.startswith("/") else f"/etc/nginx/{argument}"
    for mount, folder in MOUNTS:
        if target.startswith(mount):
            relative = folder + target[len(mount) :]
            if any(ch in relative for ch in "*?["):
                return sorted(root.glob(relative))
            return [root / relative]
    return None


def _apply(settings: RealIpSettings, name: str, value: str, source: str) -> None:
    if name == "set_real_ip_from":
        settings.ranges.append(Trusted(value, parse_range(value), source))
    elif name == "real_ip_header":
        settings.header = value
    elif name == "real_ip_recursive":
        settings.recursive = value.lower() == "on"


def _walk(
    root: Path, path: Path, settings: RealIpSettings, seen: set[Path], *, top_level_only: bool = False
) -> None:
    """Apply the real-IP directives of `path` and of the project files it includes, as nginx reads them.

    `top_level_only`: only what stands outside any block counts (another site's file in conf.d: its
    http-level lines apply to every site, its own server blocks do not).
    """
    seen.add(path.resolve())
    source = path.relative_to(root).as_posix()
    in_real_ip = source == REAL_IP_CONF
    for name, value, depth in directives(read_text(path) or ""):
        if top_level_only and depth > 0:
            continue
        if name != "include":
            _apply(settings, name, value, source)
            continue
        _include(root, value, settings, seen, in_real_ip=in_real_ip)


def _include(
    root: Path, argument: str, settings: RealIpSettings, seen: set[Path], *, in_real_ip: bool
) -> None:
    """Follow one `include`: walk the project files it names, noting what cannot be read."""
    paths = _project_paths(root, argument)
    if paths is None:
        if in_real_ip:
            settings.unreadable_includes.append(f"{argument} (outside the project's nginx folders)")
        return
    for included in paths:
        if included.relative_to(root).as_posix() == CLOUDFLARE_CONF:
            settings.cloudflare_included = True
            if not included.is_file():
                settings.cloudflare_state = "missing"
                continue
        if not included.is_file():
            if in_real_ip:
                settings.unreadable_includes.append(f"{argument} (missing)")
        elif included.resolve() not in seen:
            _walk(root, included, settings, seen)


def read_settings(root: Path) -> RealIpSettings:
    """What nginx trusts for the authentik site: real-ip.conf, then everything else the site loads.

    Real-IP lines elsewhere (nginx/custom/authentik.d/, another snippet, http level of another file
    in conf.d) add to what real-ip.conf trusts, so they count too, each named with its file.
    """
    settings = RealIpSettings()
    seen: set[Path] = set()
    _walk(root, root / REAL_IP_CONF, settings, seen)
    site = root / SITE_CONF
    site_text = read_text(site)
    if site_text is not None:
        settings.included_in_site = any(
            name == "include" and value.endswith("real-ip.conf") for name, value, _ in directives(site_text)
        )
        _walk(root, site, settings, seen)
    for other in sorted(root.glob("nginx/conf.d/*.conf")):
        if other.resolve() not in seen and other.is_file():
            _walk(root, other, settings, seen, top_level_only=True)
    if settings.cloudflare_included and settings.cloudflare_state is None:
        found = any(t.source == CLOUDFLARE_CONF for t in settings.ranges)
        settings.cloudflare_state = "ok" if found else "empty"
    return settings


def too_broad(network: Network) -> bool:
    return network.prefixlen < BROADEST_UPSTREAM_PREFIX[network.version]


def _names(items: list[Trusted]) -> str:
    return ", ".join(str(item) for item in items)


#: (what is wrong, how to fix it)
Problem = tuple[str, str]
CHOOSE = "anybody there can choose the client address nginx logs and authentik sees"
ANSWER_FIX = "`scaffold update --data upstream_proxies='ADDRESS, ...'` (addresses, CIDRs or cloudflare)"


def _answer_problems(answer: UpstreamAnswer) -> list[Problem]:
    found = []
    if answer.unreadable:
        found.append(
            (
                "the upstream_proxies answer has items that are neither `cloudflare` nor an address or "
                f"CIDR: {', '.join(answer.unreadable)}",
                ANSWER_FIX,
            )
        )
    broad = [str(n) for n in answer.ranges if too_broad(n)]
    if broad:
        found.append(
            (
                f"upstream_proxies lists {', '.join(broad)}, broader than any proxy (/8 for IPv4, /16 for "
                f"IPv6): {CHOOSE}",
                f"list only the proxies in front of nginx: {ANSWER_FIX}",
            )
        )
    return found


def _range_problems(answer: UpstreamAnswer, settings: RealIpSettings) -> list[Problem]:
    """Ranges nginx trusts beyond the answer, too broad, or missing; Cloudflare's file."""
    found = []
    expected = set(answer.ranges)
    own = [t for t in settings.ranges if t.source != CLOUDFLARE_CONF]
    from_cloudflare = [t for t in settings.ranges if t.source == CLOUDFLARE_CONF]
    extra = [t for t in own if t.network not in expected]  # None (`unix:`, junk) too
    broad = [t for t in extra + from_cloudflare if t.network is not None and too_broad(t.network)]
    if broad:
        found.append(
            (
                f"nginx trusts {_names(broad)}: every address or a good part of the Internet; {CHOOSE}",
                f"remove those lines from the files named; {RERENDER}; then {RELOAD}",
            )
        )
    extra = [t for t in extra if t not in broad]
    if extra:
        found.append(
            (
                f"nginx trusts ranges that upstream_proxies does not list: {_names(extra)}; {CHOOSE}",
                "remove those lines from the files named; to trust another proxy, list it in the answer "
                f"instead ({ANSWER_FIX}, which renders {REAL_IP_CONF}); then {RELOAD}",
            )
        )
    present = {t.network for t in own}
    missing = [str(n) for n in answer.ranges if n not in present]
    if missing:
        found.append(
            (
                f"nginx does not trust {', '.join(missing)} from upstream_proxies: requests through those "
                "proxies are logged with the proxy's address",
                f"{RERENDER}; then {RELOAD}",
            )
        )
    private = [t.text for t in from_cloudflare if t.network is not None and not t.network.is_global]
    if private:
        found.append(
            (
                f"{CLOUDFLARE_CONF} trusts {', '.join(private)}, which is not Cloudflare's (a private or "
                f"reserved range); {CHOOSE}",
                f"restore the file (the template owns it): `git checkout -- {CLOUDFLARE_CONF}`; "
                f"then {RELOAD}",
            )
        )
    return found


def _cloudflare_problems(answer: UpstreamAnswer, settings: RealIpSettings) -> list[Problem]:
    found = []
    if answer.cloudflare and not settings.cloudflare_included:
        found.append(
            (
                f"upstream_proxies lists cloudflare but {REAL_IP_CONF} does not include "
                "cloudflare-ranges.conf: visitors through Cloudflare are logged with Cloudflare's addresses",
                f"{RERENDER}; then {RELOAD}",
            )
        )
    if settings.cloudflare_included and not answer.cloudflare:
        found.append(
            (
                "nginx includes Cloudflare's ranges but upstream_proxies does not list cloudflare: anybody "
                "can put a site behind Cloudflare and choose the client address through it",
                f"remove the include; {RERENDER}; then {RELOAD}",
            )
        )
    if settings.cloudflare_state == "missing":
        what = "is missing, but it is included: nginx refuses the configuration"
    elif settings.cloudflare_state == "empty":
        what = "holds no set_real_ip_from: visitors through Cloudflare are logged with Cloudflare's addresses"
    else:
        return found
    found.append(
        (
            f"{CLOUDFLARE_CONF} {what}",
            f"restore it (the template owns it): `git checkout -- {CLOUDFLARE_CONF}`, or `scaffold update`; "
            f"then {RELOAD}",
        )
    )
    return found


def _header_problems(answer: UpstreamAnswer, settings: RealIpSettings) -> list[Problem]:
    if not settings.ranges:
        if settings.header is None:
            return []
        unused = "" if answer.empty else ", and no proxy is trusted"
        return [
            (
                f"real_ip_header {settings.header} is set without any set_real_ip_from: {REAL_IP_CONF} does "
                f"not match the upstream_proxies answer{unused}",
                f"{RERENDER}; then {RELOAD}",
            )
        ]
    found = []
    if settings.header is None:
        found.append(
            (
                "nginx trusts proxies but has no real_ip_header, so it reads X-Real-IP (nginx's default), "
                "which proxies rarely set and clients can send through them",
                f"`real_ip_header {answer.header};` in {REAL_IP_CONF} ({RERENDER}); then {RELOAD}",
            )
        )
    elif not answer.empty and settings.header.lower() != answer.header.lower():
        found.append(
            (
                f"nginx reads the client address from {settings.header}, but for this upstream_proxies "
                f"answer it must be {answer.header}: a header the proxies do not set is passed on from the "
                "client",
                f"`real_ip_header {answer.header};` in {REAL_IP_CONF} ({RERENDER}); then {RELOAD}",
            )
        )
    if not settings.recursive and not answer.empty:
        found.append(
            (
                "real_ip_recursive on is missing: nginx takes the last address of the header even when that "
                "is one of your own proxies",
                f"`real_ip_recursive on;` in {REAL_IP_CONF} ({RERENDER}); then {RELOAD}",
            )
        )
    return found


def _warnings(answer: UpstreamAnswer, settings: RealIpSettings) -> list[Problem]:
    found = []
    if settings.unreadable_includes:
        found.append(
            (
                f"{REAL_IP_CONF} includes {', '.join(settings.unreadable_includes)}: doctor cannot check "
                "what nginx trusts there",
                f"keep real-IP settings in {REAL_IP_CONF} ({RERENDER})",
            )
        )
    if not settings.included_in_site and not answer.empty:
        found.append(
            (
                f"{SITE_CONF} does not include real-ip.conf: nginx logs every client with the address of "
                "the proxy in front of it, and authentik sees only that",
                "add `include /etc/nginx/snippets/real-ip.conf;` to both server blocks (the template's "
                f"version has it; `git diff nginx/`); then {RELOAD}",
            )
        )
    return found


def judge_real_ip(answer: UpstreamAnswer, settings: RealIpSettings) -> Outcome:
    """Compare what nginx trusts for the client's address with the `upstream_proxies` answer."""
    fails = [
        *_answer_problems(answer),
        *_range_problems(answer, settings),
        *_cloudflare_problems(answer, settings),
        *_header_problems(answer, settings),
    ]
    problems = fails or _warnings(answer, settings)
    if problems:
        message = "; ".join(what for what, _ in problems)
        fix = "; ".join(dict.fromkeys(how for _, how in problems))
        return (fail if fails else warn)(message, fix)
    if not settings.ranges:
        return ok("no proxy in front of nginx: nginx uses the TCP peer as the client address")
    named = ", ".join(str(n) for n in answer.ranges)
    if answer.cloudflare:
        cloudflare = sum(1 for t in settings.ranges if t.source == CLOUDFLARE_CONF)
        also = f" and {named}" if named else ""
        return ok(
            f"nginx takes the client address from {settings.header} only from Cloudflare's {cloudflare} "
            f"ranges{also}"
        )
    count = len(answer.ranges)
    return ok(
        f"nginx takes the client address from {settings.header} only from {count} "
        f"range{'s' if count != 1 else ''}: {named}"
    )


def check_real_ip(ctx: Context) -> Outcome:
    if not (ctx.root / REAL_IP_CONF).is_file():
        if ANSWER not in (ctx.answers.raw or {}):
            return skip(
                f"not checked: this project predates the upstream_proxies question (no {REAL_IP_CONF}); "
                "nginx uses the TCP peer as the client address",
                "`scaffold update` adds it",
            )
        return fail(
            f"{REAL_IP_CONF} is missing: {SITE_CONF} includes it, so nginx refuses to start or reload",
            f"`git checkout -- {REAL_IP_CONF}` (or `scaffold update` renders it again); then {RELOAD}",
        )
    return judge_real_ip(ctx.upstream_answer, read_settings(ctx.root))
