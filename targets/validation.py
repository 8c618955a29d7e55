"""Checks shared by the targets' configs, the generator and the scenario; each raises
``ValueError`` naming the field. Pure: the generator imports it too."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def http_url(url: str, field: str) -> SplitResult:
    """``url`` split into its parts, when it is an http:// or https:// URL with a host;
    ``ValueError`` naming ``field`` otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket, say
        host = None
    if not host or parts.scheme not in ("http", "https"):
        raise ValueError(f"{field}: {url!r} is not an http:// or https:// URL")
    return parts


def validate_dependency_url(url: str) -> str:
    """The dependency's base URL without a trailing slash; ``ValueError`` if not http(s)."""
    http_url(url, "dependency")
    return url.rstrip("/")


def validate_timeout(timeout_s: float | None) -> None:
    """A dependency timeout is None (wait as long as it takes) or positive."""
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"dependency-timeout: must be positive (got {timeout_s})")
