"""The load generator: one event loop sending its share of a target's load, one row per request.

Open loop (the default): request i is due at its intended time from the
schedule, whatever happened to earlier requests. Its latency counts from the
intended time (wrk2), so a slow target or a late generator shows up in the
numbers instead of hiding in a gap between sends (coordinated omission). Its
deadline is intended time + timeout: a response after it is a failure
(``timeout``, status kept).

Back-pressure without lying: at most ``max_in_flight`` requests are in
flight. A due request that finds no free slot waits in a FIFO line; if its
deadline passes before a slot frees it is recorded as ``dropped`` (never
sent, latency = timeout). Nothing is skipped silently. Once sent, a request
gets up to ``timeout`` of service time before it is cut: a generator that
fell behind never sends a request with no time left to answer (which would
blame the target for time spent in the generator's line), and its lateness
is in the row already, as latency and as send lag.

Closed loop (``ClosedLoop``, for comparison with closed-loop tools): each
of ``concurrency`` users sends when its previous response ends, and its
intended time is its send time, so latency is service time and the tail
of a slow target is under-reported, exactly as in those tools.

Sessions (a ``Journey``): each arrival of the schedule starts a session
that sends the journey's steps in turn, open loop between sessions. A step
is due when the previous one ended plus its think time, and its row counts
latency from then; it reads its response only when it captures from it or
expects more than a status. A step whose row is not ok ends its session, and
its remaining steps are recorded as ``skipped``, never left out; so are
those a session's timeout or a stop leaves unsent. Each step's row has the
step's index as its endpoint.

Time: the wall clock is read once at start; every later time is that plus a
monotonic offset, so rows of one worker never go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from blastradius.targets.patterns import DEADLINE_HEADER
from blastradius.targets.runtime import new_event_loop, raise_nofile_limit
from blastradius.workers import schedule
from blastradius.workers.client import (
    NO_RESET,
    HttpClient,
    Kept,
    OnDone,
    Phases,
    PreparedRequest,
)
from blastradius.workers.flows import FlowResponse, FlowSession, SessionOver
from blastradius.workers.http2 import Http2Client
from blastradius.workers.journey import ROW, Journey, Response, check_name
from blastradius.workers.messages import BATCH_INTERVAL_NS, Progress, Summary
from blastradius.workers.outcome import CHECK, Ending, classify
from blastradius.workers.progress import Counters
from blastradius.workers.record import ERROR_KINDS, NULL_NS, SCHEMA, RowBuffer
from blastradius.workers.schedule import Schedule
from blastradius.workers.shards import WRITE_OPTIONS
from blastradius.workers.template import RequestTemplate, Tls, check_header, pick, weights_of

# Takes each closed batch on a writer thread; may return an awaitable (a write still under
# way elsewhere) that the generator awaits before handing over the next batch.
Sink = Callable[[pa.RecordBatch], Awaitable | None]
_YIELD_EVERY = 32  # sends in a row without sleeping before the loop lets responses in
_INTERRUPTIBLE_SLEEP_S = 0.05
# The event loop's timer resolution: libuv (uvloop) counts timers in whole milliseconds,
# and fires one shorter than half of one at once, so a wait is a whole number of ticks.
_TICK_NS = 1_000_000
_WRITER_NICE = 10  # the writer thread's niceness above the sending loop's
_WARM_TIMEOUT_S = 5.0
_CHECKS_KEPT = 50  # distinct failed checks counted by name; the rest together
_OTHER_CHECKS = "(other checks)"
HTTP_VERSIONS = ("1.1", "2", "auto")
_DEADLINE = DEADLINE_HEADER.encode("ascii")


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """Closed-loop load: ``concurrency`` users in total, each sending after its last response."""

    concurrency: int
    duration_ns: int | None = None
    max_requests: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1 (got {self.concurrency})")
        if self.duration_ns is None and self.max_requests is None:
            raise ValueError("duration: give a duration or a request count")

    def users(self, worker: int, workers: int) -> int:
        """Users run by generator ``worker`` of ``workers``."""
        return _split(self.concurrency, worker, workers)


def _ticks(wait_ns: int) -> int:
    """``wait_ns`` rounded up to whole timer ticks (at least one)."""
    return max(1, -(-wait_ns // _TICK_NS)) * _TICK_NS


def _split(total: int, worker: int, workers: int) -> int:
    return total // workers + (worker < total % workers)


@dataclass(frozen=True, slots=True)
class Share:
    """One generator's work: its share of the load against one target.

    ``requests`` are URLs (a GET each) or ``RequestTemplate``s; the request with
    global index g uses template ``pick(g)``: cycled in order, or drawn by weight
    (seeded by ``seed``) when a template has one. ``connections`` are opened to
    each origin before the start and split over the workers like the load
    (0: connections open on demand only).
    """

    target: str
    requests: tuple[str | RequestTemplate, ...]
    load: Schedule | ClosedLoop
    timeout_ns: int
    worker: int = 0
    workers: int = 1
    start_ns: int | None = None  # epoch ns of schedule time 0; None: when the generator starts
    max_in_flight: int = 10_000
    batch_interval_ns: int = BATCH_INTERVAL_NS
    connections: int = 0
    tls: Tls | None = None
    seed: int = 0
    journey: Journey | None = None  # sessions of steps; then ``requests`` is empty
    http: str = "1.1"  # "1.1", "2" (h2c in cleartext, ALPN over TLS) or "auto" (ALPN only)
    streams: int = 100  # HTTP/2: requests at once on a connection (the server may cap it)
    deadline_header: bool = False  # send each request's deadline (``DEADLINE_HEADER``)

    def __post_init__(self) -> None:
        if self.journey is not None:
            if self.requests:
                raise ValueError("steps: a target has steps or requests, not both")
            if isinstance(self.load, ClosedLoop):
                raise ValueError("steps: sessions arrive open loop (no closed:)")
        elif not self.requests:
            raise ValueError("urls: at least one URL is needed")
        templates = tuple(
            r if isinstance(r, RequestTemplate) else RequestTemplate(r) for r in self.requests
        )
        object.__setattr__(self, "requests", templates)
        weights_of(templates)
        if self.connections < 0:
            raise ValueError(f"connections: must be >= 0 (got {self.connections})")
        if self.timeout_ns <= 0:
            raise ValueError(f"timeout: must be positive (got {self.timeout_ns}ns)")
        if not 0 <= self.worker < self.workers:
            raise ValueError(f"worker: {self.worker} is not in [0, {self.workers})")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be at least 1 (got {self.max_in_flight})")
        if self.batch_interval_ns <= 0:
            raise ValueError("batch_interval: must be positive")
        if self.http not in HTTP_VERSIONS:
            raise ValueError(f"http: must be one of {', '.join(HTTP_VERSIONS)} (got {self.http!r})")
        if self.streams < 1:
            raise ValueError(f"streams: must be at least 1 (got {self.streams})")

    @property
    def templates(self) -> tuple[RequestTemplate, ...]:
        """``requests``, each a template (a URL was made a GET template when built)."""
        return cast(tuple[RequestTemplate, ...], self.requests)

    @property
    def closed(self) -> bool:
        """Whether this is closed-loop load (latency then excludes queueing before the send)."""
        return isinstance(self.load, ClosedLoop)


class _Session:
    """One session under way: its index in the run, the steps it sends in turn
    (``Journey.order``) and how far it is (``at``; past the end: over), the values its
    steps captured, when its time is up (monotonic ns), its think timer."""

    __slots__ = ("answer", "at", "deadline", "index", "order", "request", "timer", "values")

    def __init__(self, index: int, order: tuple[int, ...], deadline: int | None) -> None:
        self.index, self.order, self.deadline, self.at = index, order, deadline, 0
        self.values: dict[str, str] = {}
        self.timer: asyncio.TimerHandle | None = None
        # A python flow's call under way: its request, and where its answer goes.
        self.request: PreparedRequest | None = None
        self.answer: asyncio.Future[FlowResponse] | None = None


class Generator:
    """Runs one ``Share`` on the current event loop; batches go to ``sink`` on a writer thread."""

    def __init__(self, share: Share, sink: Sink, node: str = "local") -> None:
        self.share, self.sink, self.node = share, sink, node
        self.counters = Counters()
        self._buffer = RowBuffer(share.worker, node, sessions=share.journey is not None)
        self._connections = share.worker << 32  # a connection's run-wide id: this + its number
        # (seq, endpoint, due mono ns, session or None), in the order they fell due
        self._waiting: deque[tuple[int, int, int, _Session | None]] = deque()
        self._prepared = [PreparedRequest.build(template) for template in share.templates]
        self._weights = weights_of(share.templates) if share.templates else None
        self._journey = share.journey
        if share.journey is not None:  # the steps with nothing of a session in them
            fixed = [step.prepared for step in share.journey.steps]
            self._prepared = [request for request in fixed if request is not None]
        self._thinking: set[_Session] = set()  # sessions waiting out a think time
        self._think_rng = random.Random(f"{share.seed}/{share.worker}")
        self._seq = 0  # the next step row's sequence number
        self._checks: dict[str, int] = {}  # failed checks, "step: check" -> times
        flow = None if share.journey is None else share.journey.flow
        self._flow = None if flow is None else flow.load()
        data = None if share.journey is None else share.journey.data
        self._data = None if data is None else data.loaded()  # a URI's rows: read now
        self._flows: set[asyncio.Task] = set()  # python flows under way
        self._in_flight = 0
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wall0 = self._mono0 = self._start_mono = 0
        self._ended_ns: int | None = None

    # --- control, safe from any thread -------------------------------------------------

    def stop(self) -> None:
        """Stop sending; requests in flight finish (bounded by their deadlines), then flush."""
        self._stop_requested = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)

    @property
    def in_flight(self) -> int:
        """Requests on the wire now."""
        return self._in_flight

    def progress(self) -> Progress:
        """Counters so far and the last closed window (rows, ok, p99 latency)."""
        c = self.counters
        elapsed = (time.monotonic_ns() - self._start_mono) / 1e9 if self._start_mono else 0.0
        return Progress(
            rows=c.rows,
            sent=c.sent,
            ok=c.ok,
            errors=c.errors(),
            worker=self.share.worker,
            target=self.share.target,
            node=self.node,
            elapsed_s=max(elapsed, 0.0),
            in_flight=self._in_flight,
            waiting=len(self._waiting),
            window=c.window,
        )

    def summary(self) -> Summary:
        """A small summary of the whole run of this generator."""
        c = self.counters
        return Summary(
            rows=c.rows,
            sent=c.sent,
            ok=c.ok,
            errors=c.errors(),
            worker=self.share.worker,
            target=self.share.target,
            node=self.node,
            send_lag_p99_ms=c.send_lag_p99_ms(),
            closed_loop=self.share.closed,
            started_ns=self._epoch(self._start_mono),
            ended_ns=self._ended_ns,
            stopped=self._stop_requested,
            checks=dict(self._checks),
        )

    # --- the run ------------------------------------------------------------------------

    async def run(self) -> Summary:
        """Send this share's requests, record every one, flush the last batch; the summary."""
        raise_nofile_limit()
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._over = asyncio.Event()
        self._wall0, self._mono0 = time.time_ns(), time.monotonic_ns()
        on_done = self._on_done if self._journey is None else self._on_step_done
        self._client = _client(self.share, on_done)
        _warm_recording()  # before the freeze: the modules it imports are permanent too
        gc.collect()
        gc.freeze()  # the start-up heap is permanent: collections need not rescan it
        with ThreadPoolExecutor(1, "shard-writer", initializer=_prepare_writer) as writer:
            flusher = asyncio.create_task(self._flush_every(writer))
            try:
                warm = _split(self.share.connections, self.share.worker, self.share.workers)
                with contextlib.suppress(TimeoutError):
                    await self._client.warm(self._prepared, warm, _WARM_TIMEOUT_S)
                start_ns = self.share.start_ns
                self._start_mono = time.monotonic_ns() if start_ns is None else self._mono(start_ns)
                await self._sleep_until(self._start_mono)
                load = self.share.load
                if isinstance(load, ClosedLoop):
                    await self._closed_loop(load)
                else:
                    await self._open_loop(load)
                await self._drain()
            finally:
                self._client.close()
                self._over.set()
                await flusher
        gc.unfreeze()
        self._ended_ns = self._epoch(time.monotonic_ns())
        return self.summary()

    def _epoch(self, mono_ns: int) -> int:
        return self._wall0 + (mono_ns - self._mono0)

    def _mono(self, epoch_ns: int) -> int:
        return self._mono0 + (epoch_ns - self._wall0)

    async def _sleep_until(self, mono_ns: int) -> None:
        delay = (mono_ns - time.monotonic_ns()) / 1e9
        if delay <= 0 or self._stop_requested:
            return
        if delay < _INTERRUPTIBLE_SLEEP_S:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)

    async def _open_loop(self, load: Schedule) -> None:
        """Send each request of this generator's share when it is due: the loop wakes on
        timer ticks and sends every request due by then, and yields to responses after
        ``_YIELD_EVERY`` sends in a row."""
        share, seq, in_a_row = self.share, 0, 0
        for indices, offsets in schedule.share(load, share.worker, share.workers):
            # A request's template, or a session's index in the whole run.
            keys = (indices if self._journey else self._pick(indices)).tolist()
            for key, due in zip(keys, (offsets + self._start_mono).tolist(), strict=True):
                now = time.monotonic_ns()
                if due > now:
                    # Wake on whole ticks and send what is due by then: up to a tick late,
                    # never early (a timer may still fire early: then wait one more).
                    while due > now and not self._stop_requested:
                        await self._sleep_until(now + _ticks(due - now))
                        now = time.monotonic_ns()
                    in_a_row = 0
                else:
                    in_a_row += 1
                    if in_a_row >= _YIELD_EVERY:
                        await asyncio.sleep(0)
                        in_a_row = 0
                if self._stop_requested:
                    return
                if self._waiting:
                    self._expire_waiting(time.monotonic_ns())
                if self._journey is None:
                    self._submit(seq, key, due)
                    seq += 1
                elif not self._begin(key, due):
                    return  # unique test data ran out: no more sessions

    async def _closed_loop(self, load: ClosedLoop) -> None:
        share = self.share
        self._budget = (
            None
            if load.max_requests is None
            else _split(load.max_requests, share.worker, share.workers)
        )
        self._end = None if load.duration_ns is None else self._start_mono + load.duration_ns
        self._next_seq = 0
        for _ in range(load.users(share.worker, share.workers)):
            self._next_user_request()
        if self._end is not None:
            await self._sleep_until(self._end)

    def _next_user_request(self) -> None:
        """A closed-loop user sends its next request now, unless its time or budget is up."""
        if self._stop_requested or (self._budget is not None and self._next_seq >= self._budget):
            return
        now = time.monotonic_ns()
        if self._end is not None and now >= self._end:
            return
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._start(seq, self._endpoint(seq), now)

    def _endpoint(self, seq: int) -> int:
        index = seq * self.share.workers + self.share.worker
        if self._weights is None:
            return index % len(self._prepared)
        return int(self._pick(np.array([index]))[0])

    def _pick(self, indices: np.ndarray) -> np.ndarray:
        """The template of each request, by global request index."""
        return pick(indices, len(self._prepared), self._weights, self.share.seed)

    def _submit(self, seq: int, endpoint: int, due: int, session: _Session | None = None) -> None:
        if self._in_flight < self.share.max_in_flight and not self._waiting:
            self._start(seq, endpoint, due, session)
        else:
            self._waiting.append((seq, endpoint, due, session))

    def _stamped(self, request: PreparedRequest, due: int) -> PreparedRequest:
        """``request`` with its deadline (epoch ms: its due time and the timeout) when the
        target is sent deadlines."""
        if not self.share.deadline_header:
            return request
        deadline_ms = (self._epoch(due) + self.share.timeout_ns) // 1_000_000
        return request.with_header(_DEADLINE, b"%d" % deadline_ms)

    def _start(self, seq: int, endpoint: int, due: int, session: _Session | None = None) -> None:
        if session is None:
            self._in_flight += 1
            request = self._stamped(self._prepared[endpoint], due)
            self._client.send(request, (seq, endpoint, due, time.monotonic_ns()))
            return
        if session.request is not None:  # a python flow's call
            self._in_flight += 1
            request = self._stamped(session.request, due)
            self._client.send(request, (seq, endpoint, due, time.monotonic_ns(), session))
            return
        try:
            request = cast(Journey, self._journey).steps[endpoint].request(session.values)
        except ValueError:  # a captured value cannot go on the wire (a line break, say)
            now = time.monotonic_ns()
            self._failed_check(
                cast(Journey, self._journey).steps[endpoint].name, "a value cannot go on the wire"
            )
            self._record(seq, endpoint, due, NULL_NS, now, 0, Ending.UNSENDABLE, 0, session=session)
            session.at += 1
            self._skip_rest(session, now)
            return
        self._in_flight += 1
        request = self._stamped(request, due)
        self._client.send(request, (seq, endpoint, due, time.monotonic_ns(), session))

    def _on_done(
        self,
        context: tuple[int, int, int, int],
        status: int,
        nbytes: int,
        ending: Ending,
        kept: Kept | None,
        phases: Phases | None,
    ) -> None:
        seq, endpoint, due, sent = context
        done = time.monotonic_ns()
        self._record(seq, endpoint, due, sent, done, status, ending, nbytes, phases=phases)
        self._in_flight -= 1
        if self.share.closed:
            self._next_user_request()
        else:
            self._release()

    # --- sessions -------------------------------------------------------------------------

    def _begin(self, index: int, due: int) -> bool:
        """Start session ``index`` (of the whole run), due at ``due``; False when its test
        data has no row left for it."""
        journey = cast(Journey, self._journey)
        if journey.sessions(index + 1) <= index:
            return False
        timeout = journey.timeout_ns
        order = journey.order(index, self.share.seed)
        session = _Session(index, order, None if timeout is None else due + timeout)
        if self._data is not None:
            session.values = self._data.values(index, self.share.seed)
        if self._flow is None:
            self._step(session, due)
        else:
            row = {name[len(ROW) :]: value for name, value in session.values.items()}
            task = asyncio.get_running_loop().create_task(self._run_flow(session, row))
            self._flows.add(task)
            task.add_done_callback(self._flows.discard)
        return True

    async def _run_flow(self, session: _Session, row: dict[str, str]) -> None:
        """A python flow's session, start to end; a flow that raises is a ``check`` row."""
        flow = cast(Callable[[FlowSession, dict[str, str]], Awaitable[None]], self._flow)
        try:
            await flow(FlowSession(lambda *call: self._call(session, *call)), row)
        except (SessionOver, asyncio.CancelledError):
            return
        except Exception as exc:
            now = time.monotonic_ns()
            seq, self._seq = self._seq, self._seq + 1
            self._record(
                seq, session.at, now, NULL_NS, now, 0, Ending.FLOW_RAISED, 0, session=session
            )
            self._failed_check("flow", f"raised {type(exc).__name__}")

    async def _call(
        self,
        session: _Session,
        method: str,
        url: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
    ) -> FlowResponse:
        """One call of a python flow: a row, due now."""
        due = time.monotonic_ns()
        if self._stop_requested or (session.deadline is not None and due > session.deadline):
            raise SessionOver()
        if session.answer is not None:
            raise RuntimeError("a session makes one call at a time: await each before the next")
        for name, value in headers:
            check_header(name, value)
        session.request = PreparedRequest._prepare(url, method, headers, body, keep=True)
        answer = session.answer = asyncio.get_running_loop().create_future()
        seq, self._seq = self._seq, self._seq + 1
        self._submit(seq, session.at, due, session)
        return await answer

    def _answer(self, session: _Session, error: int, kept: Kept | None, status: int) -> None:
        """A python flow's call ended: the next call is its next step."""
        session.at += 1
        answer, session.answer, session.request = session.answer, None, None
        if answer is not None and not answer.done():
            response = None if kept is None else Response(status, *kept)
            answer.set_result(FlowResponse(ERROR_KINDS[error], response))

    def _step(self, session: _Session, due: int) -> None:
        """Send the session's current step, due at ``due``, unless its time is up or the
        generator was stopped."""
        if self._stop_requested:
            self._skip_rest(session, max(due, time.monotonic_ns()))
            return
        if session.deadline is not None and due > session.deadline:
            self._skip_rest(session, session.deadline)
            return
        seq, self._seq = self._seq, self._seq + 1
        self._submit(seq, session.order[session.at], due, session)

    def _on_step_done(
        self,
        context: tuple[int, int, int, int, _Session],
        status: int,
        nbytes: int,
        ending: Ending,
        kept: Kept | None,
        phases: Phases | None,
    ) -> None:
        seq, index, due, sent, session = context
        now = time.monotonic_ns()
        if session.request is not None:  # a python flow's call: the flow decides
            error = self._record(
                seq, index, due, sent, now, status, ending, nbytes, session=session, phases=phases
            )
            self._in_flight -= 1
            self._answer(session, error, kept, status)
            self._release()
            return
        step = cast(Journey, self._journey).steps[index]
        status_ok, failure = None, None
        if ending == Ending.RESPONSE:
            status_ok = step.expect.status_ok(status)
            if status_ok and kept is not None:
                response = Response(status, *kept)
                failure = step.expect.failure(response)
                for capture in step.captures:
                    if failure is not None:
                        break
                    value = capture.take(response)
                    if value is None:
                        failure = capture.missing()
                    else:
                        session.values[capture.name] = value
        checked = failure is not None
        error = self._record(
            seq, index, due, sent, now, status, ending, nbytes, status_ok, checked, session, phases
        )
        if checked and error == CHECK:  # not when a late response made it a timeout
            self._failed_check(step.name, check_name(cast(str, failure)))
        self._in_flight -= 1
        session.at += 1
        if error:
            self._skip_rest(session, now)
        else:
            self._next(session, now)
        self._release()

    def _next(self, session: _Session, ended: int) -> None:
        """After a step ended ok: the next one, due after its think time."""
        if session.at == len(session.order):
            return
        think = cast(Journey, self._journey).steps[session.order[session.at]].think
        due = ended + (0 if think is None else think.sample_ns(self._think_rng))
        if due <= ended:
            self._step(session, due)
        else:
            self._think(session, due)

    def _think(self, session: _Session, due: int) -> None:
        # Loop timers may fire a little early: a step goes out at its due time, never before.
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        wait_s = _ticks(due - time.monotonic_ns()) / 1e9
        session.timer = loop.call_later(wait_s, self._thought, session, due)
        self._thinking.add(session)

    def _thought(self, session: _Session, due: int) -> None:
        self._thinking.discard(session)
        session.timer = None
        if time.monotonic_ns() < due:
            self._think(session, due)
        else:
            self._step(session, due)

    def _failed_check(self, step: str, check: str) -> None:
        name = f"{step}: {check}"
        if name not in self._checks and len(self._checks) >= _CHECKS_KEPT:
            name = _OTHER_CHECKS
        self._checks[name] = self._checks.get(name, 0) + 1

    def _skip_rest(self, session: _Session, at: int) -> None:
        """Record the session's steps not sent yet as never sent (``skipped``) at ``at``."""
        for index in session.order[session.at :]:
            seq, self._seq = self._seq, self._seq + 1
            self._record(seq, index, at, NULL_NS, at, 0, Ending.SKIPPED, 0, session=session)
        session.at = len(session.order)  # over

    # --- the waiting line ---------------------------------------------------------------

    def _release(self) -> None:
        now = time.monotonic_ns()
        while self._waiting and self._in_flight < self.share.max_in_flight:
            seq, endpoint, due, session = self._waiting.popleft()
            if due + self.share.timeout_ns <= now:
                self._drop(seq, endpoint, due, due + self.share.timeout_ns, session)
            else:
                self._start(seq, endpoint, due, session)

    def _expire_waiting(self, now: int) -> None:
        # Deadlines in the line are in order (due times are, but for a session's step,
        # due within a tick of when it joined), so expired ones are at its head.
        timeout = self.share.timeout_ns
        while self._waiting and self._waiting[0][2] + timeout <= now:
            seq, endpoint, due, session = self._waiting.popleft()
            self._drop(seq, endpoint, due, due + timeout, session)

    def _drop(
        self, seq: int, endpoint: int, due: int, done: int, session: _Session | None = None
    ) -> None:
        error = self._record(
            seq, endpoint, due, NULL_NS, done, 0, Ending.NOT_SENT, 0, session=session
        )
        if session is not None and session.request is not None:  # a python flow's call
            self._answer(session, error, None, 0)
        elif session is not None:
            session.at += 1
            self._skip_rest(session, done)

    def _record(
        self,
        seq: int,
        endpoint: int,
        due: int,
        sent: int,
        done: int,
        status: int,
        ending: Ending,
        nbytes: int,
        status_ok: bool | None = None,
        check_failed: bool = False,
        session: _Session | None = None,
        phases: Phases | None = None,
    ) -> int:
        """Record one row (a session's step's, with ``session``; with ``phases``, where its
        time went on its connection); its error code."""
        c = self.counters
        if ending == Ending.NOT_SENT:  # it waited, in this line or the client's, until too late
            sent = NULL_NS
        elif phases is not None and phases[4]:
            sent += phases[4]  # it went out once a stream was free: that is its send
        late = done - due > self.share.timeout_ns
        error = classify(ending, status, late, status_ok, check_failed)
        c.rows += 1
        c.by_error[error] += 1
        if sent != NULL_NS:
            c.sent += 1
            sent = self._epoch(sent)
        if error == 0:
            c.ok += 1
        done = done if done == NULL_NS else self._epoch(done)
        index = -1 if session is None else session.index
        due = self._epoch(due)
        if phases is None:
            self._buffer.add(seq, endpoint, due, sent, done, status, error, nbytes, index)
        else:
            number, connect, tls, first, _, proto, reset = phases
            conn = self._connections + number
            self._buffer.add(
                seq,
                endpoint,
                due,
                sent,
                done,
                status,
                error,
                nbytes,
                index,
                conn,
                connect,
                tls,
                first,
                proto,
            )
            if reset != NO_RESET:
                self._buffer.reset(reset)
        return error

    async def _drain(self) -> None:
        """Wait for the waiting line, the requests in flight and the sessions between steps
        to end; once stopped, what waits is recorded unsent at once."""
        while self._waiting or self._in_flight or self._thinking or self._flows:
            if self._stop_requested:
                for task in list(self._flows):
                    task.cancel()
            if self._stop_requested and (self._waiting or self._thinking):
                now = time.monotonic_ns()
                while self._waiting:
                    seq, endpoint, due, session = self._waiting.popleft()
                    self._drop(seq, endpoint, due, now, session)
                for thinking in list(self._thinking):
                    cast(asyncio.TimerHandle, thinking.timer).cancel()
                    self._skip_rest(thinking, now)
                self._thinking.clear()
            self._expire_waiting(time.monotonic_ns())
            await asyncio.sleep(0.01)

    async def _flush_every(self, writer: ThreadPoolExecutor) -> None:
        # Never cancelled: a flush cut short would lose the batch it had taken. It stops
        # when the run is over, after a last flush of its own.
        interval = self.share.batch_interval_ns / 1e9
        try:
            while not self._over.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._over.wait(), interval)
                await self._flush(writer)
            # The run may have ended during that flush, with rows recorded after its batch
            # was taken: they go in one more.
            await self._flush(writer)
        except Exception:
            # Rows can no longer be written (the output is full, the collector died): stop
            # sending, since load nobody records is only harm; ``run`` raises this.
            self.stop()
            raise

    async def _flush(self, writer: ThreadPoolExecutor) -> None:
        batch = self._buffer.close()
        if batch is None:
            return
        self.counters.close_window(batch)
        pending = await asyncio.get_running_loop().run_in_executor(writer, self.sink, batch)
        if pending is not None:
            await pending


def _client(share: Share, on_done: OnDone) -> HttpClient | Http2Client:
    """The share's client: HTTP/1.1, or HTTP/2 with at most ``connections`` (this worker's
    part of them, at least one; 0: as many as ``max_in_flight`` needs) to each origin."""
    timeout_s = share.timeout_ns / 1e9
    if share.http == "1.1":
        return HttpClient(share.max_in_flight, timeout_s, on_done, share.tls)
    connections = -(-share.max_in_flight // share.streams)  # none given: as many as needed
    if share.connections > 0:  # given: at least one each, however many generators share them
        connections = max(1, _split(share.connections, share.worker, share.workers))
    h2c = share.http == "2"
    return Http2Client(
        connections, share.streams, timeout_s, on_done, share.tls, share.max_in_flight, h2c
    )


def _warm_recording() -> None:
    """Take one throwaway row through the sending loop's part of recording a batch (the
    buffer, the counters): their first use imports modules (pyarrow's compute kernels,
    say), which would hold the loop after the start. They never import pandas
    (``workers.arrow``)."""
    buffer = RowBuffer(worker=0, node="warm-up")
    buffer.add(0, 0, 1, 1, 2, 200, 0, 0)
    batch = buffer.close()
    if batch is not None:
        Counters().close_window(batch)


def _prepare_writer() -> None:
    # The writer thread yields the core to the sending loop (Linux: nice is per thread,
    # and a thread starts at its creator's), and pays Parquet's one-time set-up (~10 ms)
    # before the first send, not during one.
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + _WRITER_NICE)
    empty = pa.Table.from_batches([], schema=SCHEMA)  # (SCHEMA.empty_table imports pandas)
    pq.write_table(empty, pa.BufferOutputStream(), **WRITE_OPTIONS)


def run_share(share: Share, sink: Sink, node: str = "local") -> Summary:
    """Run one share on a fresh event loop (uvloop where installed), without Ray."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(Generator(share, sink, node).run())
