"""Checks shared by the targets' configs; each raises ``ValueError`` naming the field."""

from __future__ import annotations


def validate_dependency_url(url: str) -> str:
    """The dependency's base URL without a trailing slash; ``ValueError`` if not http(s)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise ValueError(f"dependency: {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def validate_timeout(timeout_s: float | None) -> None:
    """A dependency timeout is None (wait as long as it takes) or positive."""
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"dependency-timeout: must be positive (got {timeout_s})")
