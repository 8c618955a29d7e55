"""The dependency: an aiohttp server whose endpoints answer after injected latency.

``GET /endpoint/{i}`` sleeps endpoint i's latency (drawn from its spec, or
from the fault schedule in force), then answers 200, or 500 with the
endpoint's error probability; 404 for an unknown i. ``GET /healthz`` answers
at once; ``GET /stats`` gives in-flight and peak in-flight requests.
``POST /clock?origin_ns=N`` moves the fault schedule's origin to epoch time N
(a run's driver sets it to each target's load start, so a fault ``at: 10s``
lands 10 s into every target's load); by default it is the server's start.
The endpoints and ``/healthz`` are served over h2c too (HTTP/2 with prior knowledge,
on the same port, ``targets/h2c.py``), at most 100 streams at once on a connection.
Sleeping requests cost no thread, so it holds tens of thousands at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from blastradius.targets.faults import EndpointModel, Fault, FaultClock, parse_faults
from blastradius.targets.fields import Fields, whole
from blastradius.targets.h2c import H2C
from blastradius.targets.serving import add_clock
from blastradius.targets.spec import (
    Latency,
    format_error_spec,
    format_latency_spec,
    parse_error_spec,
    parse_latency_spec,
)
from blastradius.targets.validation import FieldError

_ENDPOINT = re.compile(r"/endpoint/(\d+)")


@dataclass(frozen=True)
class DependencyConfig:
    """The dependency's endpoints: their latencies and error probabilities, and the fault
    schedule. Built from a document by ``parse_config`` (a scenario's ``dependency:``
    block, or ``serve dependency``'s flags or ``--config``), and written back as one by
    ``to_json``: how the driver hands a launched dependency its configuration."""

    latencies: tuple[Latency, ...]
    error_ps: tuple[float, ...] | None = None  # None: never fails
    faults: tuple[Fault, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.latencies:
            raise FieldError("latency", "at least one endpoint is needed")
        if any(fault.proxy_only for fault in self.faults):
            raise FieldError(
                "faults",
                "resets, hangs and bandwidth are the proxy's (serve proxy, or a scenario's "
                "proxies:); the dependency injects latency and errors",
            )
        self.model()

    def model(self) -> EndpointModel:
        """The endpoint model (validates the fault schedule against the endpoints)."""
        error_ps = self.error_ps or (0.0,) * len(self.latencies)
        return EndpointModel(self.latencies, error_ps, self.faults)

    def to_json(self) -> dict[str, Any]:
        """This configuration as a document that ``parse_config`` reads back equal."""
        document: dict[str, Any] = {"latency": format_latency_spec(self.latencies)}
        if self.error_ps is not None:
            document["errors"] = format_error_spec(self.error_ps)
        if self.faults:
            document["faults"] = [fault.to_event() for fault in self.faults]
        if self.seed is not None:
            document["seed"] = self.seed
        return document


def parse_config(value: object, path: str = "", known: tuple[str, ...] = ()) -> DependencyConfig:
    """A dependency's configuration document (``latency``, ``errors``, ``faults``,
    ``seed``) at ``path``; ``known``: keys of the same mapping its caller reads."""
    fields = Fields(value, path, "config")
    for key in known:
        fields.get(key)
    latencies = fields.parsed("latency", parse_latency_spec)
    if latencies is None:
        raise FieldError(fields.at("latency"), "missing")
    error_ps = fields.parsed("errors", lambda spec: parse_error_spec(spec, len(latencies)))
    try:
        faults = parse_faults(fields.get("faults"))
    except FieldError as exc:
        raise exc.within(path) from None
    seed = fields.get("seed")
    seed = None if seed is None else whole(seed, fields.at("seed"), strict=False)
    fields.done()
    try:
        return DependencyConfig(latencies, error_ps, faults, seed)
    except FieldError as exc:
        raise exc.within(path) from None


class _Stats:
    def __init__(self) -> None:
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests = 0

    def enter(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def as_dict(self) -> dict[str, int]:
        return {
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "requests": self.requests,
        }


def make_app(config: DependencyConfig) -> web.Application:
    """The dependency as an aiohttp application; fault times count from its startup."""
    model = config.model()
    clock = FaultClock(model)
    rng = random.Random(config.seed)
    stats = _Stats()

    async def answer(i: int) -> tuple[int, bytes]:
        """Endpoint i's answer (status, JSON body), after its latency."""
        state = clock.state(i)
        delay_ns = state.latency.sample_ns(rng)
        failed = state.error_p > 0 and rng.random() < state.error_p
        stats.enter()
        try:
            await asyncio.sleep(delay_ns / 1e9)
        finally:
            stats.in_flight -= 1
        body = json.dumps({"endpoint": i, "latency_ms": delay_ns / 1e6}).encode()
        return 500 if failed else 200, body

    async def endpoint(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if i >= model.endpoints:
            raise web.HTTPNotFound(text=f"no endpoint {i}: there are {model.endpoints}\n")
        status, body = await answer(i)
        return web.Response(body=body, status=status, content_type="application/json")

    async def h2c(method: str, path: str) -> tuple[int, str, bytes]:
        """The endpoints and /healthz over h2c (the rest is HTTP/1.1's)."""
        match = _ENDPOINT.fullmatch(path)
        if method == "GET" and path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if method != "GET" or match is None or int(match.group(1)) >= model.endpoints:
            return 404, "text/plain", b"not found over HTTP/2\n"
        status, body = await answer(int(match.group(1)))
        return status, "application/json", body

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response({**stats.as_dict(), "endpoints": model.endpoints})

    app = web.Application()
    app[H2C] = h2c
    add_clock(app, "/clock", clock)
    app.router.add_get(r"/endpoint/{i:\d+}", endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats_handler)
    return app
