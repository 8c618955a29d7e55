"""Checks shared by the targets' configs, the generator and the scenario; each raises
``ValueError`` naming the field. Pure: the generator imports it too."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


class FieldError(ValueError):
    """Bad input at one field of a document: where (its path from the document's top,
    ``targets[2].requests[0].headers.X-A``; "" for the whole document) and what is wrong.

    Raised where the problem is found, with the path known there, and put in context on
    the way up (``within``): nobody reads a path back out of the message.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path, self.problem = path, problem

    def within(self, parent: str) -> FieldError:
        """This error as seen from the document that holds the field at ``parent``."""
        return FieldError(join_path(parent, self.path), self.problem)


def join_path(parent: str, path: str) -> str:
    """``parent`` then ``path``: ``a`` and ``b`` is ``a.b``, ``a`` and ``[0].b`` is
    ``a[0].b``; either may be empty."""
    if not parent or not path:
        return parent or path
    return parent + path if path.startswith("[") else f"{parent}.{path}"


def http_url(url: str, field: str) -> SplitResult:
    """``url`` split into its parts, when it is an http:// or https:// URL with a host;
    ``ValueError`` naming ``field`` otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket, say
        host = None
    if not host or parts.scheme not in ("http", "https"):
        raise FieldError(field, f"{url!r} is not an http:// or https:// URL")
    return parts


def validate_dependency_url(url: str) -> str:
    """The dependency's base URL without a trailing slash; ``ValueError`` if not http(s)."""
    http_url(url, "dependency")
    return url.rstrip("/")


def validate_timeout(timeout_s: float | None) -> None:
    """A dependency timeout is None (wait as long as it takes) or positive."""
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"dependency-timeout: must be positive (got {timeout_s})")
