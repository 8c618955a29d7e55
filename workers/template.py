"""What a generator sends: request templates, TLS options, and which template each request uses.

A ``RequestTemplate`` is one request as a user writes it (URL, method,
headers, body, weight), validated when built; ``workers.client.PreparedRequest``
turns it into the exact bytes on the wire. ``Tls`` carries the client's TLS
options as PEM text, so a generator on another machine needs no file of the
driver's. ``pick`` decides, purely, which template the request with global
index g uses: cycled in order, or drawn by weight from a counter-based hash
of (seed, g), so every generator of a run agrees without talking to the
others and a run is reproducible.

Secrets: header values may reference environment variables as ``${NAME}``
(``expand_env``), resolved where the scenario is loaded. ``redacted`` gives
the form that may be written to manifests, reports and logs: header values
replaced and URL passwords removed.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from blastradius.targets.validation import FieldError
from blastradius.workers.run_record import REDACTED, RequestWritten, TlsWritten

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field name
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` with the environment variable NAME (``$$`` is a literal ``$``).

    ``ValueError`` names a variable that is not set.
    """
    env = os.environ if env is None else env

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        if name not in env:
            raise ValueError(f"${{{name}}} is not set in the environment")
        return env[name]

    return _ENV.sub(value, text)


def check_header(name: str, value: str) -> None:
    """``ValueError`` (naming the header) unless ``name: value`` can go on the wire."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise FieldError("headers", f"{name!r} is not a valid header name")
    if not isinstance(value, str):
        raise FieldError(f"headers.{name}", f"expected text, got {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise FieldError(f"headers.{name}", "a header value cannot hold a line break")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise FieldError(f"headers.{name}", "only Latin-1 characters can be sent") from None


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """One request as sent: ``Content-Length`` is added for a body, ``Host`` from the URL."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold secrets
    body: bytes = field(default=b"", repr=False)
    weight: float | None = None  # None: templates are cycled in order

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise FieldError("method", f"{self.method!r} is not one of {', '.join(METHODS)}")
        for name, value in self.headers:
            check_header(name, value)
        if self.weight is not None and not (self.weight >= 0 and np.isfinite(self.weight)):
            raise FieldError("weight", f"must be a number >= 0 (got {self.weight!r})")
        if self.method == "HEAD" and self.body:
            raise FieldError("body", "a HEAD request has no body")
        from blastradius.workers.client import PreparedRequest  # the client owns the wire

        PreparedRequest.build(self)

    def redacted(self) -> RequestWritten:
        """This template as it may be written down: no header value, no URL password."""
        names = tuple(name for name, _ in self.headers)
        return RequestWritten(redact_url(self.url), self.method, names, len(self.body), self.weight)


def redact_url(url: str) -> str:
    """``url`` with any password in it replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{REDACTED}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class Tls:
    """Client TLS options: verify against the system's CAs, a given CA, or not at all."""

    verify: bool = True
    ca_pem: str | None = None  # PEM certificates trusted instead of the system's
    cert_pem: str | None = None  # a client certificate (with its key) for mutual TLS
    key_pem: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.ca_pem is not None and not self.verify:
            raise FieldError("tls.ca", "give ca or verify: false, not both")
        if (self.cert_pem is None) != (self.key_pem is None):
            raise FieldError("tls.cert", "a client certificate needs both cert and key")
        self.context()

    def context(self) -> ssl.SSLContext:
        """A client ``SSLContext``; ``ValueError`` names a PEM that does not load."""
        try:
            context = ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError):
            raise FieldError("tls.ca", "not a PEM certificate") from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_pem is not None:
            _load_client_cert(context, self.cert_pem, self.key_pem or "")
        return context

    def redacted(self) -> TlsWritten:
        """The options as they may be written down (no key)."""
        return TlsWritten(self.verify, self.ca_pem is not None, bool(self.cert_pem))


def _load_client_cert(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    # ssl loads a certificate chain only from files: a private file, gone once read.
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=True) as chain:
        os.chmod(chain.name, 0o600)
        chain.write(key_pem + "\n" + cert_pem)
        chain.flush()
        try:
            context.load_cert_chain(chain.name)
        except (ssl.SSLError, ValueError):
            raise FieldError("tls.cert", "the certificate and key do not load") from None


def weights_of(templates: Sequence[RequestTemplate]) -> tuple[float, ...] | None:
    """The templates' weights, or None when they are cycled (no template has a weight).

    A template without a weight where others have one weighs 1.
    """
    if all(t.weight is None for t in templates):
        return None
    weights = tuple(1.0 if t.weight is None else float(t.weight) for t in templates)
    if sum(weights) <= 0:
        raise FieldError("weight", "at least one request needs a weight above 0")
    return weights


def pick(indices: np.ndarray, count: int, weights: Sequence[float] | None, seed: int) -> np.ndarray:
    """The template of each request, by global index: ``g % count``, or drawn by weight."""
    indices = np.asarray(indices, np.int64)
    if weights is None:
        return indices % count
    cumulative = np.cumsum(np.asarray(weights, np.float64))
    uniform = _uniform(indices, seed) * cumulative[-1]
    return np.minimum(np.searchsorted(cumulative, uniform, side="right"), count - 1)


def draw(index: int, count: int, seed: int) -> int:
    """One of ``count`` drawn uniformly for global index ``index``, from (seed, index)."""
    return min(int(_uniform(np.array([index]), seed)[0] * count), count - 1)


def _uniform(indices: np.ndarray, seed: int) -> np.ndarray:
    """A uniform draw in [0, 1) per index: splitmix64 of (seed, index), no state."""
    with np.errstate(over="ignore"):
        x = (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        x += np.uint64(seed & (2**64 - 1))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)
