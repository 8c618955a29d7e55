"""The fault-injecting proxy: a reverse proxy in front of a real dependency that decides
a fault for each request, not each connection.

Every request is forwarded to the upstream (method, path and query, headers, body,
streamed both ways; hop-by-hop headers dropped, ``Host`` set to the upstream's, as
nginx's ``proxy_pass`` does). Routes (``--route``: a path prefix, or ``~REGEX``,
either after an optional method, ``GET /api/``) are endpoints 0, 1, ... in order; a
request that matches none passes through untouched; with no route, one endpoint matches
every path. For a request of endpoint i, in its state at that moment (the specs, then
the fault schedule, as the dependency's):

1. it waits the endpoint's latency (a draw from its spec), then
2. one draw decides: a hang (no answer, ever: until the client gives up), a reset
   (the connection closed with RST), an error (``--error-status``, default 503, not
   forwarded), or none: forwarded, its response body paced to the endpoint's bandwidth.

A response the proxy changed carries ``X-Blastradius-Fault`` (``error 503``, ``delay
120ms``, ``bandwidth 1000B/s``). Its own API lives under ``/_blastradius/`` so it never
shadows the upstream's paths: ``POST /_blastradius/clock?origin_ns=N`` (the schedule's
origin, as the dependency's ``/clock``), ``POST /_blastradius/faults`` (a new schedule,
YAML or JSON, replacing the old one at once), ``GET /_blastradius/stats`` (requests and
injected faults per route) and ``GET /_blastradius/healthz``. An upstream that cannot
be reached gives 502 (``X-Blastradius-Proxy: upstream unreachable``), counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from aiohttp import web
from multidict import CIMultiDict

from blastradius.targets.faults import (
    PROBABILITIES,
    EndpointModel,
    EndpointState,
    Fault,
    FaultClock,
    parse_faults,
)
from blastradius.targets.fields import Fields, each, text, whole
from blastradius.targets.serving import add_clock
from blastradius.targets.spec import (
    format_bandwidth_spec,
    format_duration_ns,
    format_error_spec,
    format_latency_spec,
    parse_bandwidth_spec,
    parse_error_spec,
    parse_latency_spec,
)
from blastradius.targets.validation import FieldError, http_url

CONTROL = "/_blastradius"
FAULT_HEADER = "X-Blastradius-Fault"
PROXY_HEADER = "X-Blastradius-Proxy"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Connection",
    )
)
PACE_SLICE_S = 0.05  # a paced body goes out in slices of this much time


@dataclass(frozen=True)
class Route:
    """Requests this endpoint takes: an optional method, and a path prefix or a regex."""

    text: str
    method: str | None
    prefix: str | None = None
    regex: re.Pattern | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with ``method`` and ``path`` (no query) is this route's."""
        if self.method is not None and method != self.method:
            return False
        if self.regex is not None:
            return self.regex.search(path) is not None
        return self.prefix is not None and path.startswith(self.prefix)


def parse_route(text: str) -> Route:
    """``/api/``, ``POST /api/orders``, ``~^/items/\\d+$`` or ``GET ~...``."""
    words = text.split(None, 1)
    if not words:
        raise ValueError("route: empty")
    method = None
    if len(words) == 2 and words[0].upper() in METHODS:
        method, pattern = words[0].upper(), words[1].strip()
    elif len(words) == 2 and not words[0].startswith(("/", "~")):
        raise ValueError(f"route {text!r}: {words[0]!r} is not one of {', '.join(METHODS)}")
    else:
        pattern = text.strip()
    if pattern.startswith("~"):
        try:
            return Route(text, method, regex=re.compile(pattern[1:]))
        except re.error as exc:
            raise ValueError(f"route {text!r}: not a regular expression: {exc}") from None
    if not pattern.startswith("/"):
        raise ValueError(f"route {text!r}: a path prefix begins with / (or ~ for a regex)")
    return Route(text, method, prefix=pattern)


def _upstream(url: str) -> str:
    parts = http_url(url, "upstream")
    if parts.query or parts.fragment:
        raise FieldError("upstream", f"{url!r}: give a base URL, without query or fragment")
    return url.rstrip("/")


@dataclass(frozen=True)
class ProxyConfig:
    """The upstream, the routes, each endpoint's starting state and the fault schedule.

    Built from a document by ``parse_config`` (a scenario's ``proxies:`` entry, or ``serve
    proxy``'s flags or ``--config``), and written back as one by ``to_json``: how the
    driver hands a launched proxy its configuration."""

    upstream: str
    routes: tuple[Route, ...]
    starting: tuple[EndpointState, ...]
    faults: tuple[Fault, ...] = ()
    error_status: int = 503
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream", _upstream(self.upstream))
        endpoints = max(1, len(self.routes))
        if len(self.starting) != endpoints:
            raise FieldError(
                "latency", f"{len(self.starting)} endpoints given, the routes make {endpoints}"
            )
        for i, state in enumerate(self.starting):
            if state.error_p + state.reset_p + state.hang_p > 1:
                problem = "errors, resets and hangs add up to more than 1"
                raise FieldError("", f"endpoint {i}: {problem}")
        if not 400 <= self.error_status <= 599:
            raise FieldError("error_status", f"{self.error_status} is not a 4xx or 5xx status")
        self.model(self.faults)

    def model(self, faults: tuple[Fault, ...]) -> EndpointModel:
        """The endpoints over time under ``faults`` (checked against the endpoints)."""
        return EndpointModel.of(self.starting, faults)

    def to_json(self) -> dict[str, Any]:
        """This configuration as a document that ``parse_config`` reads back equal."""
        starting = self.starting
        document: dict[str, Any] = {
            "upstream": self.upstream,
            "routes": [route.text for route in self.routes],
            "latency": format_latency_spec(tuple(s.latency for s in starting)),
            "errors": format_error_spec(tuple(s.error_p for s in starting)),
            "resets": format_error_spec(tuple(s.reset_p for s in starting)),
            "hangs": format_error_spec(tuple(s.hang_p for s in starting)),
            "bandwidth": format_bandwidth_spec(tuple(s.bandwidth_bps for s in starting)),
            "error_status": self.error_status,
            "faults": [fault.to_event() for fault in self.faults],
        }
        if self.seed is not None:
            document["seed"] = self.seed
        return document


def parse_config(value: object, path: str = "", known: tuple[str, ...] = ()) -> ProxyConfig:
    """A proxy's configuration document (``upstream``, ``routes``, the specs of
    ``FAULT_KEYS``: one item per endpoint or one for all, ``error_status``, ``seed``,
    ``faults``) at ``path``; ``known``: keys of the same mapping its caller reads."""
    fields = Fields(value, path, "config")
    for key in known:
        fields.get(key)
    upstream = text(fields.get("upstream"), fields.at("upstream"))
    routes = fields.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise FieldError(fields.at("routes"), "expected a list of route patterns")
    parsed = each(routes, fields.at("routes"), parse_route)
    n = max(1, len(parsed))
    latencies = fields.parsed("latency", parse_latency_spec) or parse_latency_spec("0")
    if len(latencies) == 1:
        latencies *= n
    elif len(latencies) != n:
        raise FieldError(
            fields.at("latency"), f"the spec gives {len(latencies)} endpoints, the routes make {n}"
        )

    def probabilities(key: str) -> tuple[float, ...]:
        return fields.parsed(key, lambda spec: parse_error_spec(spec, n, key)) or (0.0,) * n

    states = zip(
        latencies,
        *(probabilities(key) for key in PROBABILITIES),
        fields.parsed("bandwidth", lambda spec: parse_bandwidth_spec(spec, n)) or (0,) * n,
        strict=True,
    )
    error_status = whole(fields.get("error_status", 503), fields.at("error_status"))
    seed = fields.get("seed")
    seed = None if seed is None else whole(seed, fields.at("seed"), strict=False)
    try:
        faults = parse_faults(fields.get("faults"))
    except FieldError as exc:
        raise exc.within(path) from None
    fields.done()
    try:
        starting = tuple(EndpointState(*values) for values in states)
        return ProxyConfig(upstream, tuple(parsed), starting, faults, error_status, seed)
    except FieldError as exc:
        raise exc.within(path) from None


@dataclass(frozen=True)
class Decision:
    """What happens to one request: a delay, then at most one fault."""

    delay_ns: int
    fault: str | None  # "hang" | "reset" | "error" | None
    bandwidth_bps: int


def decide(state: EndpointState, rng: random.Random) -> Decision:
    """One request's fate in ``state``: its delay, and one draw for hang, reset or error."""
    delay_ns = state.latency.sample_ns(rng)
    fault = None
    if state.hang_p or state.reset_p or state.error_p:
        u = rng.random()
        if u < state.hang_p:
            fault = "hang"
        elif u < state.hang_p + state.reset_p:
            fault = "reset"
        elif u < state.hang_p + state.reset_p + state.error_p:
            fault = "error"
    return Decision(delay_ns, fault, state.bandwidth_bps)


@dataclass
class RouteStats:
    """What the proxy did on one route so far. ``GET /_blastradius/stats`` answers with
    these names, and run.json keeps them (``workers.run_record.RouteCounts``, which has
    the same fields: the services may not import the workers, and a test holds the two
    equal)."""

    route: str
    requests: int = 0
    delayed: int = 0
    errors: int = 0
    resets: int = 0
    hangs: int = 0
    throttled: int = 0


@dataclass
class Stats:
    """Every route's counts, requests no route took, upstream failures, and requests in
    the proxy now (as ``workers.run_record.ProxyCounts``, with ``in_flight`` beside)."""

    routes: list[RouteStats]
    unmatched: int = 0
    upstream_errors: int = 0
    in_flight: int = 0


def _reset(request: web.Request) -> None:
    """Close the client's connection with RST (SO_LINGER 0), not FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _connection_tokens(headers) -> set[str]:
    """Headers a ``Connection`` header names: hop-by-hop for this message too."""
    return {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }


def _end_to_end(headers) -> CIMultiDict:
    """``headers`` without the hop-by-hop ones (and ``Host``: the caller sets its own)."""
    drop = HOP_BY_HOP | _connection_tokens(headers) | {"host"}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def make_app(config: ProxyConfig) -> web.Application:
    """The proxy as an aiohttp application (serve it with handler cancellation on, so a
    request whose client went away stops waiting). Over 60 lines: its handlers are
    closures over one proxy's state (draws, counts, clock, upstream session), as the
    dependency's are; each handler is short."""
    rng = random.Random(config.seed)
    clock = FaultClock(config.model(config.faults))
    stats = Stats([RouteStats(r.text) for r in config.routes] or [RouteStats("(all)")])
    upstream = urlsplit(config.upstream)
    host = upstream.netloc

    def endpoint_of(request: web.Request) -> int | None:
        if not config.routes:
            return 0
        for i, route in enumerate(config.routes):
            if route.matches(request.method, request.path):
                return i
        return None

    async def forward(request: web.Request) -> web.StreamResponse:
        i = endpoint_of(request)
        stats.in_flight += 1
        try:
            if i is None:
                stats.unmatched += 1
                return await relay(request, None, 0)
            counts = stats.routes[i]
            counts.requests += 1
            now = clock.state(i)
            decision = decide(now, rng)
            if decision.fault == "hang":
                counts.hangs += 1
                await asyncio.Event().wait()  # cancelled when the client goes
            if decision.delay_ns:
                counts.delayed += 1
                await asyncio.sleep(decision.delay_ns / 1e9)
            if decision.fault == "reset":
                counts.resets += 1
                _reset(request)
                raise asyncio.CancelledError  # nothing more to say on this connection
            labels = []
            if decision.delay_ns:
                labels.append(f"delay {format_duration_ns(decision.delay_ns)}")
            if decision.fault == "error":
                counts.errors += 1
                labels.append(f"error {config.error_status}")
                return web.Response(
                    status=config.error_status,
                    text=f"injected by blastradius proxy: route {i}\n",
                    headers={FAULT_HEADER: ", ".join(labels)},
                )
            if decision.bandwidth_bps:
                counts.throttled += 1
                labels.append(f"bandwidth {decision.bandwidth_bps}B/s")
            return await relay(request, ", ".join(labels) or None, decision.bandwidth_bps)
        finally:
            stats.in_flight -= 1

    async def relay(
        request: web.Request, label: str | None, bandwidth_bps: int
    ) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        url = config.upstream + request.raw_path
        data = request.content if request.body_exists else None
        headers = _end_to_end(request.headers)
        headers["Host"] = host
        try:
            upstream_response = await session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            stats.upstream_errors += 1
            return web.Response(
                status=502,
                text=f"blastradius proxy: upstream {config.upstream} unreachable: "
                f"{type(exc).__name__}\n",
                headers={PROXY_HEADER: "upstream unreachable"},
            )
        async with upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status, reason=upstream_response.reason
            )
            response.headers.extend(_end_to_end(upstream_response.headers))
            if label:
                response.headers[FAULT_HEADER] = label
            await response.prepare(request)
            try:
                if bandwidth_bps:
                    await _paced(upstream_response, response, bandwidth_bps)
                else:
                    async for chunk in upstream_response.content.iter_any():
                        await response.write(chunk)
            except (TimeoutError, aiohttp.ClientError, OSError):
                stats.upstream_errors += 1  # cut mid-body: the client sees it cut too
                _reset(request)
                raise asyncio.CancelledError from None
            await response.write_eof()
            return response

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response(asdict(stats))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def set_faults(request: web.Request) -> web.Response:
        try:
            faults = parse_faults(yaml.safe_load(await request.text()))
            model = config.model(faults)
        except ValueError as exc:  # a FieldError, with its path from "faults"
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        except yaml.YAMLError as exc:
            message = str(exc).splitlines()[0]
            raise web.HTTPBadRequest(text=f"faults: not valid YAML: {message}\n") from None
        clock.model = model
        return web.json_response({"faults": len(faults)})

    async def open_session(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    app = web.Application(client_max_size=0)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_get(f"{CONTROL}/stats", stats_handler)
    app.router.add_get(f"{CONTROL}/healthz", healthz)
    add_clock(app, f"{CONTROL}/clock", clock)
    app.router.add_post(f"{CONTROL}/faults", set_faults)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def _paced(
    upstream: aiohttp.ClientResponse, response: web.StreamResponse, bandwidth_bps: int
) -> None:
    """Copy the body at ``bandwidth_bps``: slices of ``PACE_SLICE_S`` worth, each sent when
    the bytes before it have had their time."""
    slice_bytes = max(1, int(bandwidth_bps * PACE_SLICE_S))
    start, sent = time.monotonic(), 0
    while True:
        chunk = await upstream.content.read(slice_bytes)
        if not chunk:
            return
        due = start + sent / bandwidth_bps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await response.write(chunk)
        sent += len(chunk)
