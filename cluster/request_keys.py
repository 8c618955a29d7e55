"""The request keys of a target given by its requests: method, headers, body, templates, TLS.

A target names what to send with ``url``, ``urls`` or ``requests`` (templates),
and ``method``, ``headers``, ``body``/``json``/``body_file`` and ``tls``. Files
are read when the scenario is loaded (``Files``), relative to the scenario's
directory; ``${NAME}`` in a header value reads the environment. ``redacted``
gives the document as it may be written down.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blastradius.targets.fields import Fields, kind_of, number, text
from blastradius.targets.validation import FieldError, join_path
from blastradius.workers.template import (
    REDACTED,
    RequestTemplate,
    Tls,
    expand_env,
    redact_url,
    weights_of,
)

REQUEST_KEYS = ("method", "headers", "body", "json", "body_file")


@dataclass(frozen=True)
class Files:
    """Where relative paths in a scenario point, and the environment ``${NAME}`` reads."""

    base: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] | None = None

    def read(self, value: object, path: str) -> bytes:
        """The bytes of the file a field names; ``ValueError`` names the field."""
        name = Path(text(value, path))
        try:
            return (name if name.is_absolute() else self.base / name).read_bytes()
        except OSError as exc:
            raise FieldError(path, f"cannot read {str(name)!r}: {exc.strerror}") from None


def _request_fields(fields: Fields, files: Files, defaults: Mapping[str, Any]) -> dict:
    """Method, headers and body of a request block, over ``defaults`` (a target's own)."""
    result = dict(defaults)
    method = fields.get("method")
    if method is not None:
        result["method"] = text(method, fields.at("method")).upper()
    headers = fields.get("headers")
    if headers is not None:
        merged = {name.lower(): (name, value) for name, value in result.get("headers", ())}
        for name, value in _headers(headers, fields.at("headers"), files).items():
            merged[name.lower()] = (name, value)
        result["headers"] = tuple(merged.values())
    given = [key for key in ("body", "json", "body_file") if fields.get(key) is not None]
    if len(given) > 1:
        raise FieldError(fields.at(given[1]), "give one of body, json or body_file")
    if given:
        result["body"], content_type = _body(fields, given[0], files)
        headers = result.get("headers", ())
        if content_type and not any(n.lower() == "content-type" for n, _ in headers):
            result["headers"] = (*headers, ("Content-Type", content_type))
    return result


def _headers(value: object, path: str, files: Files) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise FieldError(path, "expected a mapping of header names to values")
    headers = {}
    for name, raw in value.items():
        at = f"{path}.{name}"
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise FieldError(at, f"expected text, got {kind_of(raw)}")
        try:
            headers[str(name)] = expand_env(str(raw), files.env)
        except ValueError as exc:
            raise FieldError(at, str(exc)) from None
    return headers


def _body(fields: Fields, key: str, files: Files) -> tuple[bytes, str | None]:
    value, at = fields.get(key), fields.at(key)
    if key == "body":
        if not isinstance(value, str):
            raise FieldError(at, f"expected text, got {kind_of(value)} (use json: for a mapping)")
        return value.encode(), None
    if key == "json":
        if not isinstance(value, (dict, list)):
            raise FieldError(at, f"expected a mapping or a list, got {kind_of(value)}")
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode(), "application/json"
    return files.read(value, at), None


def _template(fields: Fields, url: object, at: str, request: Mapping[str, Any]) -> RequestTemplate:
    url = text(url, at)
    try:
        return RequestTemplate(url, **request)
    except FieldError as exc:  # a template names its own field: ``url``, ``headers.X``, ...
        raise (
            FieldError(at, exc.problem) if exc.path == "url" else exc.within(fields.path)
        ) from None


def parse_tls(value: object, target: str, files: Files) -> Tls:
    """The ``tls`` block of the target at path ``target``: ``verify``, and ``ca``, ``cert``
    and ``key`` files as PEM text."""
    fields = Fields(value, join_path(target, "tls"))
    verify = fields.get("verify", True)
    if not isinstance(verify, bool):
        raise FieldError(fields.at("verify"), "expected true or false")
    pems = {
        key: None if fields.get(key) is None else files.read(fields.get(key), fields.at(key))
        for key in ("ca", "cert", "key")
    }
    fields.done()
    text = {k: None if v is None else v.decode("latin-1") for k, v in pems.items()}
    try:
        return Tls(verify, text["ca"], text["cert"], text["key"])
    except FieldError as exc:  # ``tls.cert``, ...: Tls names its fields as a target has them
        raise exc.within(target) from None


def parse_requests(fields: Fields, files: Files) -> tuple[RequestTemplate, ...]:
    """A target's templates: from ``url``, ``urls`` or ``requests``, over its own defaults."""
    defaults = _request_fields(fields, files, {})
    url, urls, listed = fields.get("url"), fields.get("urls"), fields.get("requests")
    if listed is None:
        items = [url] if url is not None else urls
        if not isinstance(items, list) or not items:
            raise FieldError(fields.at("urls"), "expected a non-empty list of URLs")
        return tuple(
            _template(
                fields,
                item,
                fields.at("url") if url is not None else f"{fields.at('urls')}[{i}]",
                defaults,
            )
            for i, item in enumerate(items)
        )
    if not isinstance(listed, list) or not listed:
        raise FieldError(fields.at("requests"), "expected a non-empty list of requests")
    templates = []
    for i, item in enumerate(listed):
        block = Fields(item, f"{fields.at('requests')}[{i}]")
        request = _request_fields(block, files, defaults)
        weight = block.get("weight")
        if weight is not None:
            request["weight"] = number(weight, block.at("weight"), strict=False)
        its_url = block.get("url")
        block.done()
        templates.append(_template(block, its_url, block.at("url"), request))
    try:
        weights_of(templates)
    except ValueError as exc:
        raise FieldError(fields.at("requests"), str(exc)) from None
    return tuple(templates)


def redacted(original: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario document as it may be written down: header values and URL passwords
    replaced (secrets stay out of run.json, reports and logs)."""
    document = copy.deepcopy(dict(original))
    targets = document.get("targets")
    for target in targets if isinstance(targets, list) else ():
        if not isinstance(target, dict):
            continue
        listed = [*(target.get("requests") or ()), *(target.get("steps") or ())]
        blocks = [target, *(r for r in listed if isinstance(r, dict))]
        for block in blocks:
            if isinstance(block.get("headers"), dict):
                block["headers"] = {name: REDACTED for name in block["headers"]}
            if isinstance(block.get("url"), str):
                block["url"] = redact_url(block["url"])
        if isinstance(target.get("urls"), list):
            target["urls"] = [redact_url(u) if isinstance(u, str) else u for u in target["urls"]]
    return document
