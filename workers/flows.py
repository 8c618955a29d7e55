"""Sessions written in Python: ``steps: {python: "flows.py:checkout"}`` (issue 23).

When YAML steps are not enough, a session is an ``async def checkout(session, row)``
in a module of the user's. Its source travels in the plan (``Flow``); the driver
loads it while it validates the scenario (``Flow.load``), so a syntax error, an
import that fails or a missing function is bad input, and each generator loads the
same source again. The function gets a ``FlowSession`` and the session's row of test
data (a dict, empty without ``data:``), and calls ``await session.get(url)``,
``session.post(url, json=...)`` and so on, one at a time (a second call before the
first was answered raises): each call is a row, due when it is made,
sent on the generator's own client, and answered with a ``FlowResponse``. A call
never raises for a failed request: the response says how it ended (``ok``,
``error``), and the flow decides. A session ends when the function returns; when it
raises, a ``check`` row says so. Past the session's timeout, or once the generator is
stopped, a call raises ``SessionOver`` and the session ends there.
"""

from __future__ import annotations

import inspect
import json as jsonlib
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from blastradius.targets.validation import FieldError
from blastradius.workers.journey import MISSING, Response

FlowFunction = Callable[[Any, dict[str, str]], Awaitable[None]]


class SessionOver(Exception):
    """The session's time is up, or the generator was stopped: the flow ends here."""


@dataclass(frozen=True, slots=True)
class Flow:
    """A flow's module, by name and source, and the function in it that runs a session."""

    filename: str
    source: str = field(repr=False)
    function: str

    def load(self) -> FlowFunction:
        """The function, from a fresh module of the source; ``FieldError`` says why it
        cannot be (a syntax error with its line, an import that raised, no such
        ``async def`` taking ``(session, row)``)."""
        try:
            code = compile(self.source, self.filename, "exec")
        except SyntaxError as exc:
            raise FieldError("", f"{self.filename} line {exc.lineno}: {exc.msg}") from None
        module = types.ModuleType(self.filename.rsplit("/", 1)[-1].removesuffix(".py"))
        module.__file__ = self.filename
        try:
            exec(code, module.__dict__)  # the user's own flow, as Locust runs a locustfile
        except Exception as exc:
            raise FieldError("", f"{self.filename}: loading it raised {_one_line(exc)}") from None
        function = getattr(module, self.function, None)
        if function is None:
            raise FieldError("", f"{self.filename} has no {self.function!r}")
        if not inspect.iscoroutinefunction(function):
            raise FieldError("", f"{self.filename}: {self.function} is not an async def")
        try:
            inspect.signature(function).bind(None, None)
        except TypeError:
            raise FieldError(
                "", f"{self.filename}: {self.function} does not take (session, row)"
            ) from None
        return function


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


class FlowResponse:
    """A call's answer: how it ended (``ok``, ``error``: an error kind, "" when ok), its
    status (0 without a response), and, when a response came, its headers and body."""

    __slots__ = ("error", "ok", "response")

    def __init__(self, error: str, response: Response | None) -> None:
        self.error, self.ok, self.response = error, error == "", response

    @property
    def status(self) -> int:
        """The HTTP status (0: no response)."""
        return 0 if self.response is None else self.response.status

    @property
    def body(self) -> bytes:
        """The body (up to the client's limit), empty without a response."""
        return b"" if self.response is None else self.response.body

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        return None if self.response is None else self.response.header(name)

    def text(self) -> str:
        """The body as text."""
        return "" if self.response is None else self.response.text()

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON."""
        value = MISSING if self.response is None else self.response.json()
        if value is MISSING:
            raise ValueError(f"the response (status {self.status}) is not JSON")
        return value


class FlowSession:
    """What a flow calls: one method per HTTP method, each a row of the run."""

    def __init__(self, send: Callable[[str, str, tuple, bytes], Awaitable[FlowResponse]]):
        self._send = send

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | str = b"",
    ) -> FlowResponse:
        """Send one request; its answer (it raises only ``SessionOver``, and
        ``ValueError`` for a request that cannot be sent)."""
        fields = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":"))
            if not any(name.lower() == "content-type" for name in fields):
                fields["Content-Type"] = "application/json"
        data = body.encode() if isinstance(body, str) else bytes(body)
        return await self._send(method.upper(), url, tuple(fields.items()), data)

    async def get(self, url: str, **options: Any) -> FlowResponse:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **options)

    async def head(self, url: str, **options: Any) -> FlowResponse:
        """``request("HEAD", url, ...)``."""
        return await self.request("HEAD", url, **options)

    async def post(self, url: str, **options: Any) -> FlowResponse:
        """``request("POST", url, ...)``."""
        return await self.request("POST", url, **options)

    async def put(self, url: str, **options: Any) -> FlowResponse:
        """``request("PUT", url, ...)``."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: str, **options: Any) -> FlowResponse:
        """``request("PATCH", url, ...)``."""
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str, **options: Any) -> FlowResponse:
        """``request("DELETE", url, ...)``."""
        return await self.request("DELETE", url, **options)

    async def options(self, url: str, **options: Any) -> FlowResponse:
        """``request("OPTIONS", url, ...)``."""
        return await self.request("OPTIONS", url, **options)
