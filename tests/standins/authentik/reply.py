"""An HTTP answer as the stand-in's handlers build it, and the cookie helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_FOUND_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head>"
    b"<body><h1>Not Found</h1><p>The requested resource was not found on this server.</p></body></html>\n"
)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    location: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)


def core_not_found() -> Reply:
    """authentik's own 404 page (Django), which a request the embedded outpost does not take gets."""
    return Reply(404, NOT_FOUND_PAGE, "text/html; charset=utf-8")


def cookies(headers: dict[str, str]) -> dict[str, str]:
    """The request's cookies (first value wins, as Go's and Django's parsers do)."""
    result: dict[str, str] = {}
    for part in headers.get("cookie", "").replace(",", ";").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in result:
            result[name] = value.strip().strip('"')
    return result


def set_cookie(name: str, value: str, *, secure: bool, max_age: int | None = None) -> tuple[str, str]:
    """A host-only, HttpOnly, SameSite=Lax cookie on `/` (what authentik's stores send)."""
    parts = [f"{name}={value}", "Path=/"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    parts.append("SameSite=Lax")
    return ("Set-Cookie", "; ".join(parts))
