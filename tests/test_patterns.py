"""The resilience patterns' options and state machines (targets/patterns.py, guards.py,
guarded.py), on an injected clock: no sleeps, every transition by the numbers."""

from __future__ import annotations

import random

import pytest

from blastradius.cluster.cli import UsageError, _patterns
from blastradius.cluster.scenario import parse_scenario
from blastradius.targets.guarded import GAVE_UP, Admission, Attempt, Guards
from blastradius.targets.guards import (
    CLOSED,
    GAP_NS,
    HALF_OPEN,
    LIMIT_EVERY_NS,
    MAX_EVENTS,
    OPEN,
    AdaptiveLimit,
    BulkheadGate,
    CircuitBreaker,
    Events,
    Line,
    RetryBudget,
    parse_deadline,
)
from blastradius.targets.patterns import (
    Breaker,
    Bulkhead,
    Limit,
    Patterns,
    Retry,
    Shed,
    parse_patterns,
)
from blastradius.targets.validation import FieldError

MS = 1_000_000
S = 1_000_000_000


class Clock:
    """Epoch ns that move only when told."""

    def __init__(self, now: int = 1_000 * S) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events(clock) -> Events:
    return Events(clock)


def kinds(events: Events) -> list[tuple]:
    return [(e["pattern"], e["event"], e.get("endpoint"), e["count"]) for e in events.events]


# --- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, Patterns()),
        ({"bulkhead": {"per_endpoint": 3}}, Patterns(bulkhead=Bulkhead(3))),
        ({"breaker": {"failures": "25%"}}, Patterns(breaker=Breaker(failures=0.25))),
        ({"breaker": {"failures": 0.5, "window": "10s"}}, Patterns(breaker=Breaker(0.5, 10 * S))),
        (
            {"breaker": {"open_for": "500ms", "probes": 1, "min_calls": 4}},
            Patterns(breaker=Breaker(open_for_ns=500 * MS, probes=1, min_calls=4)),
        ),
        ({"limit": {"adaptive": "aimd"}}, Patterns(limit=Limit("aimd"))),
        (
            {"limit": {"adaptive": "gradient", "initial": 5, "min": 2, "max": 9, "smoothing": 1}},
            Patterns(limit=Limit("gradient", 5, 2, 9, smoothing=1.0)),
        ),
        ({"shed": {"queue_timeout": "100ms"}}, Patterns(shed=Shed(100 * MS))),
        (
            {"shed": {"queue_timeout": 2, "lifo_when_busy": True}},
            Patterns(shed=Shed(2 * S, lifo_when_busy=True)),
        ),
        ({"retry": {"attempts": 3}}, Patterns(retry=Retry(3))),
        (
            {"retry": {"attempts": 2, "budget": "10%", "backoff": "5ms"}},
            Patterns(retry=Retry(2, 0.1, backoff_ns=5 * MS)),
        ),
        ({"deadline": "propagate"}, Patterns(deadline=True)),
    ],
)
def test_pattern_options_parse(document, expected):
    patterns = parse_patterns(document)
    assert patterns == expected
    assert parse_patterns(patterns.to_json()) == patterns  # what a launch passes on


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"bulkhead": {}}, "p.bulkhead.per_endpoint: expected a number, got nothing"),
        ({"bulkhead": {"per_endpoint": 0}}, "p.bulkhead.per_endpoint: must be > 0 (got 0)"),
        ({"bulkhead": 3}, "p.bulkhead: expected a mapping, got int"),
        (
            {"breaker": {"failures": "150%"}},
            "p.breaker.failures: a share above 0, at most 1 (got '150%')",
        ),
        ({"breaker": {"failures": "x%"}}, "p.breaker.failures: 'x%' is not a percentage"),
        ({"breaker": {"failures": 0}}, "p.breaker.failures: must be > 0 (got 0)"),
        ({"breaker": {"window": "0s"}}, "p.breaker.window: must be positive"),
        ({"breaker": {"probes": 1.5}}, "p.breaker.probes: expected a whole number, got 1.5"),
        ({"breaker": {"open": "1s"}}, "p.breaker.open: unknown key (known here: failures,"),
        ({"limit": {}}, "p.limit.adaptive: None is not one of aimd, gradient"),
        ({"limit": {"adaptive": "vegas"}}, "p.limit.adaptive: 'vegas' is not one of aimd"),
        ({"limit": {"adaptive": "aimd", "min": 5, "max": 4}}, "p.limit.max: must be at least min"),
        ({"limit": {"adaptive": "aimd", "initial": 50, "max": 10}}, "p.limit.initial: must be"),
        ({"limit": {"adaptive": "aimd", "backoff": 1}}, "p.limit.backoff: must be above 0 and"),
        ({"limit": {"adaptive": "gradient", "tolerance": 0.5}}, "p.limit.tolerance: must be at"),
        ({"limit": {"adaptive": "gradient", "smoothing": 2}}, "p.limit.smoothing: must be above"),
        ({"shed": {}}, "p.shed.queue_timeout: missing"),
        ({"shed": {"queue_timeout": "1s", "lifo_when_busy": "yes"}}, "p.shed.lifo_when_busy: ex"),
        ({"retry": {"attempts": 0}}, "p.retry.attempts: must be > 0 (got 0)"),
        ({"retry": {"attempts": 3, "budget": "0%"}}, "p.retry.budget: must be > 0"),
        ({"retry": {"attempts": 3, "backoff": "-1s"}}, "p.retry.backoff: duration '-1s' is neg"),
        ({"deadline": True}, "p.deadline: True: the one choice is propagate"),
        ({"circuit": {}}, "p.circuit: unknown key (known here: bulkhead, breaker, limit,"),
        ([1], "p: expected a mapping, got list"),
    ],
)
def test_bad_pattern_options_are_one_line_naming_the_field(document, message):
    with pytest.raises(FieldError) as caught:
        parse_patterns(document, "p")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def scenario(target: dict) -> dict:
    return {
        "name": "p",
        "load": {"rate": 10, "duration": "1s"},
        "dependency": {"latency": "10*10"},
        "targets": [target],
    }


def test_a_launched_target_takes_the_pattern_keys_and_a_given_one_only_deadline():
    launched = {"name": "b", "kind": "blocking", "threads": 4, "breaker": {"probes": 2}}
    target = parse_scenario(scenario(launched)).targets[0]
    assert target.patterns == Patterns(breaker=Breaker(probes=2))
    given = {"name": "u", "url": "http://127.0.0.1:9/x", "deadline": "propagate"}
    assert parse_scenario(scenario(given)).targets[0].patterns == Patterns(deadline=True)
    with pytest.raises(FieldError, match=r"^targets\[0\]\.breaker: unknown key"):
        parse_scenario(scenario({**given, "breaker": {}}))
    with pytest.raises(FieldError, match=r"^targets\[0\]\.deadline: 'x': the one choice"):
        parse_scenario(scenario({**given, "deadline": "x"}))


def test_shedding_an_async_target_needs_its_connection_limit_for_a_queue():
    shed = {"name": "a", "kind": "async", "shed": {"queue_timeout": "50ms"}}
    with pytest.raises(FieldError, match=r"^targets\[0\]\.shed: needs max_connections"):
        parse_scenario(scenario(shed))
    target = parse_scenario(scenario({**shed, "max_connections": 8})).targets[0]
    assert target.patterns.shed == Shed(50 * MS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{breaker: [", "--patterns: not valid YAML"),
        ("breaker", "--patterns: expected a mapping, got str"),
        ("{retry: {attempts: -1}}", "--patterns.retry.attempts: must be > 0"),
    ],
)
def test_serve_patterns_flag_errors_name_the_flag(text, message):
    with pytest.raises(UsageError) as caught:
        _patterns(text)
    assert str(caught.value).startswith(message)


# --- events ----------------------------------------------------------------------------


def test_events_coalesce_one_action_into_episodes_and_count_exactly(clock, events):
    events.count("shed", "shed")
    clock.advance(GAP_NS)  # exactly the gap: the same episode
    events.count("shed", "shed")
    events.count("bulkhead", "rejected", 9)  # another action: its own episode
    clock.advance(GAP_NS + 1)  # past the gap: a new episode
    events.count("shed", "shed")
    events.mark("breaker", "opened", 9)
    events.mark("breaker", "opened", 9)  # a state change is never folded
    assert kinds(events) == [
        ("shed", "shed", None, 2),
        ("bulkhead", "rejected", 9, 1),
        ("shed", "shed", None, 1),
        ("breaker", "opened", 9, 1),
        ("breaker", "opened", 9, 1),
    ]
    first = events.events[0]
    assert (first["at_ns"], first["until_ns"]) == (1_000 * S, 1_000 * S + GAP_NS)
    assert events.totals() == {"shed.shed": 3, "bulkhead.rejected": 1, "breaker.opened": 2}


def test_events_past_the_cap_are_dropped_but_still_counted(clock, events):
    for _ in range(MAX_EVENTS + 3):
        events.mark("breaker", "opened", 1)
    clock.advance(GAP_NS * 2)
    events.count("shed", "shed")  # its episode cannot be kept: it is dropped, not folded
    events.count("shed", "shed")
    snapshot = events.snapshot()
    assert len(snapshot["events"]) == MAX_EVENTS
    assert snapshot["dropped"] == 5
    assert snapshot["counts"] == {"breaker.opened": MAX_EVENTS + 3, "shed.shed": 2}


# --- bulkhead --------------------------------------------------------------------------


def test_a_bulkhead_holds_each_endpoint_to_its_places(events):
    gate = BulkheadGate(Bulkhead(2), events)
    assert [gate.enter(9) for _ in range(3)] == [True, True, False]
    assert gate.enter(1)  # another endpoint has its own places
    gate.leave(9)
    assert gate.enter(9)
    assert events.totals() == {"bulkhead.rejected": 1}


# --- breaker ---------------------------------------------------------------------------

BREAKER = Breaker(failures=0.5, window_ns=10 * S, open_for_ns=2 * S, probes=2, min_calls=4)


def calls(breaker: CircuitBreaker, outcomes: str) -> None:
    """``outcomes``: one letter a call, ``o`` ok and ``x`` failed."""
    for outcome in outcomes:
        permit = breaker.admit()
        assert permit is not None
        breaker.record(permit, outcome == "o")


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        ("xxx", CLOSED),  # under min_calls
        ("xxxx", OPEN),
        ("ooox", CLOSED),  # 25% failed
        ("oxox", OPEN),  # 50%: the threshold is reached
        ("oooooxxxx", CLOSED),  # 4 of 9
        ("oooooxxxxx", OPEN),  # 5 of 10
    ],
)
def test_a_breaker_opens_at_its_failure_share_once_enough_calls_ended(events, outcomes, state):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, outcomes)
    assert breaker.state == state


def test_failures_older_than_the_window_are_forgotten(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "xxx")
    clock.advance(10 * S)  # the bucket of those three leaves the window
    calls(breaker, "xoo")
    assert breaker.state == CLOSED
    calls(breaker, "x")  # 2 of 4 in the window
    assert breaker.state == OPEN


def test_an_open_breaker_refuses_then_probes_and_closes(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "xxxx")
    assert breaker.admit() is None
    clock.advance(2 * S - 1)
    assert breaker.admit() is None
    clock.advance(1)
    first, second = breaker.admit(), breaker.admit()
    assert breaker.state == HALF_OPEN and None not in (first, second)
    assert breaker.admit() is None  # every probe is out
    breaker.record(first, True)
    assert breaker.state == HALF_OPEN
    breaker.record(second, True)
    assert breaker.state == CLOSED
    assert kinds(events) == [
        ("breaker", "opened", 9, 1),
        ("breaker", "rejected", 9, 1),
        ("breaker", "rejected", 9, 2),  # 2 s after the first: an episode of its own
        ("breaker", "half_open", 9, 1),
        ("breaker", "closed", 9, 1),
    ]


def test_a_failed_probe_reopens_the_breaker_for_another_open_for(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "xxxx")
    clock.advance(2 * S)
    probe = breaker.admit()
    breaker.record(probe, False)
    assert breaker.state == OPEN
    clock.advance(2 * S - 1)
    assert breaker.admit() is None
    clock.advance(1)
    assert breaker.admit() is not None and breaker.state == HALF_OPEN


def test_a_call_from_before_a_change_of_state_says_nothing_after_it(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    slow = breaker.admit()  # a call that will end late
    calls(breaker, "xxxx")
    clock.advance(2 * S)
    probe = breaker.admit()
    breaker.record(slow, False)  # it began closed: not a failed probe
    assert breaker.state == HALF_OPEN
    breaker.record(probe, True)
    breaker.record(breaker.admit(), True)
    assert breaker.state == CLOSED
    calls(breaker, "xxx")  # the window began anew on closing: 3 calls are too few
    assert breaker.state == CLOSED


# --- adaptive limits -------------------------------------------------------------------


def test_aimd_grows_by_one_while_busy_and_backs_off_on_a_drop(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=4, min=2, max=6, backoff=0.5), events)
    started = [limit.enter() for _ in range(4)]
    assert limit.enter() is None  # four in flight: the limit
    clock.advance(10 * MS)
    limit.leave(started[0], ok=True)  # 4 in flight at its end, 4 >= 4/2: grow
    assert limit.limit == 5
    limit.leave(started[1], ok=False)  # a failed call: multiply by the backoff
    assert limit.limit == 2.5
    limit.leave(started[2], ok=True)  # 2 in flight, 2 * 2 >= 2.5: grow
    assert limit.limit == 3.5
    limit.leave(started[3], ok=True)  # 1 in flight, 2 < 3.5: not busy, no growth
    assert limit.limit == 3.5
    assert limit.in_flight == 0
    assert events.totals()["limit.rejected"] == 1


def test_aimd_counts_a_call_slower_than_its_timeout_as_a_drop_and_keeps_its_bounds(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=2, min=2, max=3, timeout_ns=S), events)
    started = limit.enter()
    clock.advance(S + 1)
    limit.leave(started, ok=True)
    assert limit.limit == 2  # 2 * 0.9 is under min
    for _ in range(5):
        a, b = limit.enter(), limit.enter()
        limit.leave(a, ok=True)
        limit.leave(b, ok=True)
    assert limit.limit == 3  # max


def test_gradient_shrinks_when_latency_rises_over_the_long_term_and_grows_when_it_holds(
    clock, events
):
    config = Limit("gradient", initial=16, min=1, max=100, tolerance=1.0, smoothing=1.0)
    limit = AdaptiveLimit(config, events)
    started = [limit.enter() for _ in range(16)]
    clock.advance(100 * MS)
    limit.leave(started.pop(), ok=True)  # the first sample sets the long term: gradient 1
    assert limit.limit == 16 + 4  # plus the queue allowance, sqrt(16)
    clock.advance(300 * MS)  # 400 ms against a long term near 100 ms: gradient 0.5 (floor)
    limit.leave(started.pop(), ok=True)
    assert limit.limit == pytest.approx(20 * 0.5 + 20**0.5)


def test_gradient_learns_nothing_while_the_service_is_not_what_limits(clock, events):
    limit = AdaptiveLimit(Limit("gradient", initial=10, smoothing=1.0), events)
    started = limit.enter()
    clock.advance(S)
    limit.leave(started, ok=True)  # 1 in flight of 10: under half
    assert limit.limit == 10
    assert limit.long_ns == S  # but the long-term latency is learnt


def test_the_limits_moves_are_events_at_most_every_interval(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=2, max=10), events)
    for _ in range(3):
        a, b = limit.enter(), limit.enter()
        limit.leave(a, ok=True)
        limit.leave(b, ok=True)
    assert [e["value"] for e in events.events] == [3]  # later moves within the interval
    clock.advance(LIMIT_EVERY_NS)
    a = limit.enter()
    limit.leave(a, ok=False)
    assert [e["value"] for e in events.events][-1] == int(limit.limit)


# --- shedding --------------------------------------------------------------------------


def test_a_line_is_fifo_until_a_queue_stands_then_lifo_and_refuses_the_long_waits(clock, events):
    line = Line(Shed(100 * MS, lifo_when_busy=True), events)
    line.put("a")
    clock.advance(40 * MS)
    line.put("b")
    clock.advance(40 * MS)
    assert line.take() == ("a", 80 * MS)  # the queue has stood 80 ms: first in, first out
    clock.advance(40 * MS)
    line.put("c")
    assert line.take() == ("c", 0)  # it has stood 120 ms (never empty): newest first
    assert line.lifo
    assert line.take() == ("b", 80 * MS)
    assert line.take() is None
    assert line.too_long(100 * MS + 1) and not line.too_long(100 * MS)
    line.put("d")  # the line emptied: it stands anew
    assert line.take() == ("d", 0) and not line.lifo
    assert kinds(events) == [
        ("shed", "lifo", None, 1),
        ("shed", "shed", None, 1),
        ("shed", "fifo", None, 1),
    ]


def test_without_lifo_a_line_stays_first_in_first_out_and_a_waiter_can_leave(clock, events):
    line = Line(Shed(10 * MS), events)
    line.put("a")
    line.put("b")
    clock.advance(S)
    assert line.remove("a") and not line.remove("a")
    assert line.take() == ("b", S)
    assert not line.lifo and len(line) == 0


# --- retries ---------------------------------------------------------------------------


def test_without_a_budget_every_retry_is_allowed(events):
    budget = RetryBudget(Retry(3), events)
    assert all(budget.allow() for _ in range(50))
    assert events.totals() == {"retry.retried": 50}


def test_a_budget_allows_its_share_of_the_window_s_requests(clock, events):
    budget = RetryBudget(Retry(3, budget=0.1, window_ns=10 * S), events)
    for _ in range(20):
        budget.request()
    assert [budget.allow() for _ in range(3)] == [True, True, False]
    clock.advance(10 * S)  # those requests and retries leave the window
    assert not budget.allow()
    for _ in range(10):
        budget.request()
    assert budget.allow() and not budget.allow()
    assert events.totals() == {"retry.retried": 3, "retry.denied": 3}


@pytest.mark.parametrize(
    ("header", "deadline"),
    [
        (None, None),
        ("1700000000123", 1_700_000_000_123 * MS),
        ("1700000000123.5", 1_700_000_000_123_500_000),
        ("0.5", 500_000),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("0", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_the_deadline_header_is_epoch_milliseconds_or_ignored(header, deadline):
    assert parse_deadline(header) == deadline


# --- a request's way through them --------------------------------------------------------


def guards(clock, timeout_s=1.0, **options) -> Guards:
    return Guards(parse_patterns(options), timeout_s, clock, random.Random(1))


def test_a_passed_deadline_is_answered_at_once_and_a_near_one_cuts_the_timeout(clock):
    g = guards(clock, deadline="propagate")
    assert g.admit(1, clock.now) == GAVE_UP
    admission = g.admit(1, clock.now + 300 * MS)
    attempt = g.attempt(admission)
    assert (attempt.timeout_s, attempt.cut) == (0.3, True)
    g.attempted(admission, attempt, 504)
    far = g.attempt(g.admit(1, clock.now + 5 * S))
    assert (far.timeout_s, far.cut) == (1.0, False)
    clock.advance(300 * MS)
    assert g.attempt(admission) == GAVE_UP
    assert g.events.totals() == {"deadline.expired": 2, "deadline.cut": 1}


def test_without_the_deadline_pattern_a_deadline_header_changes_nothing(clock):
    g = guards(clock)
    admission = g.admit(1, clock.now - 1)
    assert isinstance(admission, Admission) and admission.deadline_ns is None
    assert g.attempt(admission).timeout_s == 1.0


def test_retries_stop_at_the_attempts_a_success_or_a_refusal(clock):
    g = guards(clock, retry={"attempts": 3})
    admission = g.admit(1, None)
    for expected in (0.0, 0.0, None):  # two retries, then the attempts are spent
        g.attempt(admission)
        assert g.again(admission, 502) == expected
    fresh = g.admit(1, None)
    g.attempt(fresh)
    assert g.again(fresh, 200) is None
    assert g.again(fresh, 503) is None  # a refusal (a breaker, say) is not retried
    assert g.events.totals() == {"retry.retried": 2}


def test_backoff_is_full_jitter_doubling_each_retry(clock):
    g = guards(clock, retry={"attempts": 4, "backoff": "100ms"})
    admission = g.admit(1, None)
    waits = []
    for _ in range(4):
        g.attempt(admission)
        waits.append(g.again(admission, 504))
    assert waits[3] is None
    for wait, ceiling in zip(waits, (0.1, 0.2, 0.4), strict=False):
        assert 0 <= wait <= ceiling
    assert waits[2] > 0.2  # seeded: the third could only be this long with the doubling


def test_no_retry_once_the_callers_deadline_has_passed(clock):
    g = guards(clock, retry={"attempts": 3}, deadline="propagate")
    admission = g.admit(1, clock.now + 100 * MS)
    g.attempt(admission)
    clock.advance(100 * MS)
    assert g.again(admission, 504) is None


def test_a_refused_request_holds_nothing_and_a_finished_one_gives_back_its_places(clock):
    g = guards(clock, bulkhead={"per_endpoint": 1}, limit={"adaptive": "aimd", "initial": 1})
    held = g.admit(9, None)
    assert isinstance(held, Admission)
    assert g.admit(9, None)[0] == 503  # the bulkhead
    refused = g.admit(1, None)  # its bulkhead has room, the limit has not
    assert refused[0] == 503 and "limit" in refused[1]
    assert g.bulkhead.in_flight[1] == 0
    g.finish(held, 200)
    assert g.bulkhead.in_flight[9] == 0 and g.limit.in_flight == 0
    assert isinstance(g.admit(1, None), Admission)


def test_an_open_breaker_refuses_the_attempt_and_learns_from_each_call(clock):
    g = guards(clock, breaker={"min_calls": 2, "failures": "50%"})
    for _ in range(2):
        admission = g.admit(9, None)
        attempt = g.attempt(admission)
        g.attempted(admission, attempt, 504)
        g.finish(admission, 504)
    admission = g.admit(9, None)
    assert g.attempt(admission) == (503, "breaker: endpoint 9 is open\n")
    assert isinstance(g.attempt(g.admit(1, None)), Attempt)  # endpoint 1's breaker is closed
    assert g.stats() == {"breaker.opened": 1, "breaker.rejected": 1}


# --- edges (each found alive by the patterns mutation area) -----------------------------


def test_the_options_defaults_are_the_documented_ones_and_frozen():
    assert Breaker() == Breaker(0.5, 5 * S, 2 * S, 3, 10)
    limit = Limit("aimd")
    assert (limit.initial, limit.min, limit.max) == (20, 1, 1000)
    assert (limit.backoff, limit.timeout_ns, limit.tolerance, limit.smoothing) == (
        0.9, S, 2.0, 0.2,
    )  # fmt: skip
    assert Retry(3) == Retry(3, None, 10 * S, 0)
    for option in (Bulkhead(1), Breaker(), limit, Shed(S), Retry(1), Patterns()):
        with pytest.raises(AttributeError):
            option.__setattr__(next(iter(option.__dataclass_fields__)), None)


@pytest.mark.parametrize(
    ("document", "taken"),
    [
        ({"breaker": {"failures": "100%"}}, True),
        ({"breaker": {"failures": 1}}, True),
        ({"retry": {"attempts": 1}}, True),  # one attempt: no retry
        ({"retry": {"attempts": 2, "budget": 1}}, True),
        ({"retry": {"attempts": 2, "budget": 1.01}}, False),
        ({"limit": {"adaptive": "aimd", "backoff": 0.99}}, True),
        ({"limit": {"adaptive": "aimd", "backoff": 0}}, False),
        ({"limit": {"adaptive": "aimd", "backoff": 1.5}}, False),
        ({"limit": {"adaptive": "gradient", "smoothing": 0.01}}, True),
        ({"limit": {"adaptive": "gradient", "smoothing": 1.01}}, False),
        ({"limit": {"adaptive": "gradient", "tolerance": 1}}, True),
        ({"limit": {"adaptive": "aimd", "min": 3, "max": 3, "initial": 3}}, True),
    ],
)
def test_the_options_edges_are_where_the_docs_put_them(document, taken):
    try:
        parse_patterns(document)
    except FieldError:
        assert not taken
    else:
        assert taken


def test_only_the_patterns_given_are_made(clock):
    assert guards(clock).line is None
    assert guards(clock, shed={"queue_timeout": "1s"}).line is not None


def test_a_deadline_already_behind_is_gave_up_on_at_admission_and_at_an_attempt(clock):
    g = guards(clock, deadline="propagate")
    assert g.admit(1, clock.now - 1) == GAVE_UP
    admission = g.admit(1, clock.now + 10 * MS)
    clock.advance(11 * MS)
    assert g.attempt(admission) == GAVE_UP


def test_a_retry_goes_ahead_before_the_deadline_and_not_after(clock):
    g = guards(clock, retry={"attempts": 5}, deadline="propagate")
    admission = g.admit(1, clock.now + 100 * MS)
    g.attempt(admission)
    clock.advance(99 * MS)
    assert g.again(admission, 502) == 0.0
    g.attempt(admission)
    clock.advance(2 * MS)
    assert g.again(admission, 502) is None


class Ceiling:
    """A draw that is always the top of its range."""

    def uniform(self, low: float, high: float) -> float:
        return high


def test_the_backoffs_ceiling_doubles_from_the_first_wait(clock):
    g = Guards(parse_patterns({"retry": {"attempts": 4, "backoff": "100ms"}}), 1.0, clock)
    g.rng = Ceiling()
    admission = g.admit(1, None)
    waits = []
    for _ in range(3):
        g.attempt(admission)
        waits.append(g.again(admission, 504))
    assert waits == [0.1, 0.2, 0.4]


def test_the_breaker_learns_successes_and_the_limit_learns_from_what_was_answered(clock):
    g = guards(clock, breaker={"min_calls": 3, "failures": "50%"})
    for status in (200, 200, 504):  # one failure in three: closed
        admission = g.admit(9, None)
        g.attempted(admission, g.attempt(admission), status)
    assert g.breakers[9].state == CLOSED
    limited = guards(clock, limit={"adaptive": "aimd", "initial": 2})
    first, second = limited.admit(1, None), limited.admit(1, None)
    limited.finish(first, 200)  # a success with the service busy: one more
    assert limited.limit.limit == 3
    limited.finish(second, 502)  # a failure: times 0.9
    assert limited.limit.limit == pytest.approx(2.7)


def test_a_breaker_half_opens_once_open_for_has_passed_not_only_at_it(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "xxxx")
    clock.advance(5 * S)
    assert breaker.admit() is not None and breaker.state == HALF_OPEN


def test_a_limit_that_fell_below_what_is_in_flight_refuses_until_it_is_under(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=4, backoff=0.5), events)
    started = [limit.enter() for _ in range(4)]
    limit.leave(started[0], ok=False)  # 3 in flight, the limit now 2
    assert limit.enter() is None
    limit.leave(started[1], ok=True)
    limit.leave(started[2], ok=True)
    assert limit.enter() is not None  # 1 in flight, under the limit


def test_aimd_grows_only_with_at_least_half_the_limit_in_flight(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=5), events)
    started = [limit.enter() for _ in range(3)]
    limit.leave(started[0], ok=True)  # 3 in flight of 5: 6 >= 5, one more
    assert limit.limit == 6
    limit.leave(started[1], ok=True)  # 2 of 6: 4 < 6, no more
    assert limit.limit == 6


def test_aimd_takes_a_call_as_long_as_its_timeout_as_no_drop(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=2, timeout_ns=S), events)
    started = limit.enter()
    limit.enter()  # two in flight: the limit is full, so a success grows it
    clock.advance(S)
    limit.leave(started, ok=True)
    assert limit.limit == 3


def test_gradients_long_term_latency_is_an_average_that_decays_after_a_slow_spell(clock, events):
    limit = AdaptiveLimit(Limit("gradient", initial=10), events)

    def sample(ms: int) -> None:
        started = limit.enter()
        clock.advance(ms * MS)
        limit.leave(started, ok=True)

    sample(100)
    sample(401)  # 100 ms + (401 - 100) ms / 600, to the fraction of a nanosecond
    assert limit.long_ns == 100 * MS + 301 * MS / 600
    long = limit.long_ns
    sample(66)  # the long term is 1.5 times this one: no decay
    assert limit.long_ns == pytest.approx(long + (66 * MS - long) / 600)
    long = limit.long_ns
    sample(40)  # 2.5 times: it decays by 5%
    assert limit.long_ns == pytest.approx((long + (40 * MS - long) / 600) * 0.95)


def test_a_call_with_no_time_measured_is_a_sample_of_one_nanosecond(clock, events):
    limit = AdaptiveLimit(Limit("gradient", initial=2), events)
    started = limit.enter()
    limit.leave(started, ok=True)
    assert limit.long_ns == 1


def test_the_limit_shows_a_move_past_the_interval_after_the_last_shown(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=2, max=10), events)
    a, b = limit.enter(), limit.enter()
    limit.leave(a, ok=True)  # 3, shown
    clock.advance(LIMIT_EVERY_NS + 1)
    limit.leave(b, ok=False)  # 2.7: 2, shown
    assert [e["value"] for e in events.events] == [3, 2]


def test_a_line_that_has_stood_exactly_its_timeout_is_busy(clock, events):
    line = Line(Shed(100 * MS, lifo_when_busy=True), events)
    line.put("a")
    line.put("b")
    clock.advance(100 * MS)
    assert line.take() == ("b", 100 * MS) and line.lifo


def test_a_retry_budget_forgets_what_left_its_window_bucket_by_bucket(clock, events):
    budget = RetryBudget(Retry(3, budget=0.2, window_ns=10 * S), events)
    for _ in range(30):
        budget.request()
    assert budget.allow()
    clock.advance(5 * S)
    assert budget.allow()  # the 30 are still in the window
    for _ in range(10):
        budget.request()
    clock.advance(5 * S)  # the first 30 and a retry have left it; 10 and a retry have not
    assert [budget.allow() for _ in range(2)] == [True, False]


def test_the_event_rules_are_the_documented_ones():
    assert (GAP_NS, MAX_EVENTS, LIMIT_EVERY_NS) == (S, 10_000, 100 * MS)
    assert GAVE_UP[0] == 504


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Breaker(failures=0), "failures"),
        (lambda: Breaker(failures=1.01), "failures"),
        (lambda: Breaker(probes=0), "probes"),
        (lambda: Breaker(min_calls=0), "min_calls"),
        (lambda: Limit("aimd", min=0, initial=1), "min"),
        (lambda: Retry(3, backoff_ns=-1), "backoff"),
        (lambda: Shed(0), "queue_timeout"),
        (lambda: Shed(-1), "queue_timeout"),
    ],
)
def test_options_built_in_code_are_checked_as_read_ones(build, field):
    with pytest.raises(FieldError) as caught:
        build()
    assert caught.value.path == field


def test_options_at_their_least_are_taken():
    Breaker(failures=1, probes=1, min_calls=1)
    Limit("aimd", min=1, initial=1)
    Retry(1, backoff_ns=0)
    Shed(1)
    with pytest.raises(AttributeError):
        Attempt(None, 1.0, False).cut = True  # type: ignore[misc]


def test_a_deadline_as_far_as_the_timeout_does_not_cut_it_and_only_a_504_counts(clock):
    g = guards(clock, deadline="propagate")
    level = g.attempt(g.admit(1, clock.now + S))
    assert (level.timeout_s, level.cut) == (1.0, False)
    near = g.admit(1, clock.now + 500 * MS)
    attempt = g.attempt(near)
    g.attempted(near, attempt, 502)  # it failed, but not for the deadline
    assert g.events.totals() == {}


def test_a_breakers_window_counts_calls_across_its_buckets(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "xx")
    clock.advance(5 * S)
    calls(breaker, "xx")  # 4 in the window, 5 s apart
    assert breaker.state == OPEN


def test_a_breakers_failures_stay_in_the_bucket_they_happened_in(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "o")
    clock.advance(5 * S)
    calls(breaker, "xx")
    clock.advance(5 * S)  # the success's bucket leaves the window, the failures' stays
    calls(breaker, "x")
    assert breaker.state == CLOSED  # 3 calls: under min_calls
    calls(breaker, "o")  # 3 failures of 4
    assert breaker.state == OPEN


@pytest.mark.parametrize(("in_flight", "learns"), [(4, False), (5, True), (6, True)])
def test_gradient_learns_once_half_its_limit_is_in_flight(clock, events, in_flight, learns):
    limit = AdaptiveLimit(Limit("gradient", initial=10, smoothing=1.0), events)
    started = [limit.enter() for _ in range(in_flight)]
    clock.advance(100 * MS)
    limit.leave(started[0], ok=True)
    assert (limit.limit != 10) == learns


def test_gradient_moves_by_its_smoothing_toward_a_gradient_of_at_most_one(clock, events):
    limit = AdaptiveLimit(Limit("gradient", initial=16, tolerance=2.0, smoothing=0.5), events)
    started = [limit.enter() for _ in range(16)]
    clock.advance(100 * MS)
    limit.leave(started[0], ok=True)  # tolerance x 1 = 2, capped at 1: toward 16 + 4
    assert limit.limit == 16 * 0.5 + 20 * 0.5


def test_a_waiter_leaves_the_line_by_itself_not_by_its_likeness(clock, events):
    line = Line(Shed(S), events)
    a, b = [1], [1]  # equal, and two waiters
    line.put(a)
    line.put(b)
    assert line.remove(b)
    taken, _ = line.take()
    assert taken is a and line.take() is None


def test_a_breaker_forgets_calls_from_long_before_its_window(clock, events):
    breaker = CircuitBreaker(BREAKER, events, 9)
    calls(breaker, "xxx")
    clock.advance(20 * S)  # no call for two windows
    calls(breaker, "x")
    assert breaker.state == CLOSED


def test_aimd_grows_with_exactly_half_its_limit_in_flight(clock, events):
    limit = AdaptiveLimit(Limit("aimd", initial=6), events)
    started = [limit.enter() for _ in range(4)]
    limit.leave(started[0], ok=True)  # 4 in flight of 6: grows to 7
    limit.leave(started[1], ok=True)  # 3 of 7: 6 < 7, no
    assert limit.limit == 7
    again = AdaptiveLimit(Limit("aimd", initial=6), events)
    started = [again.enter() for _ in range(3)]
    again.leave(started[0], ok=True)  # 3 of 6: 6 >= 6, grows
    assert again.limit == 7


def test_gradient_takes_half_of_an_odd_limit_and_a_gradient_below_one(clock, events):
    odd = AdaptiveLimit(Limit("gradient", initial=9, smoothing=1.0), events)
    started = [odd.enter() for _ in range(4)]
    clock.advance(100 * MS)
    odd.leave(started[0], ok=True)  # 4 in flight of 9: under 4.5
    assert odd.limit == 9
    limit = AdaptiveLimit(Limit("gradient", initial=16, tolerance=1.0, smoothing=1.0), events)
    started = [limit.enter() for _ in range(16)]
    clock.advance(100 * MS)
    limit.leave(started.pop(), ok=True)  # long 100 ms: the first
    clock.advance(50 * MS)
    limit.leave(started.pop(), ok=True)  # 150 ms against about 100: a gradient near 2/3
    long = 100 * MS + 50 * MS / 600
    assert limit.limit == pytest.approx(20 * (long / (150 * MS)) + 20**0.5)


def test_a_limit_at_its_maximum_shows_no_move(clock, events):
    # (two int objects of one value, as a document read gives them)
    limit = AdaptiveLimit(Limit("aimd", initial=int("300"), max=int("300")), events)
    for _ in range(3):
        started = [limit.enter() for _ in range(200)]
        for one in started:
            limit.leave(one, ok=True)
        clock.advance(LIMIT_EVERY_NS + 1)
    assert events.events == []


def test_a_line_stands_while_a_waiter_leaves_it_not_empty(clock, events):
    line = Line(Shed(100 * MS, lifo_when_busy=True), events)
    a, b, c = object(), object(), object()
    for waiter in (a, b, c):
        line.put(waiter)
    assert line.remove(b)
    clock.advance(100 * MS)
    assert line.take() == (c, 100 * MS)  # it has stood its timeout: newest first
    assert not line.too_long(0) and not line.too_long(50 * MS)


def test_a_retry_budget_forgets_requests_from_long_before_its_window(clock, events):
    budget = RetryBudget(Retry(3, budget=0.1, window_ns=10 * S), events)
    for _ in range(30):
        budget.request()
    clock.advance(20 * S)
    for _ in range(10):
        budget.request()
    assert [budget.allow() for _ in range(2)] == [True, False]
    fresh = RetryBudget(Retry(3, budget=0.1, window_ns=10 * S), events)
    for _ in range(9):
        fresh.request()
    assert not fresh.allow()  # 10% of 9 is under one retry


@pytest.mark.parametrize(
    "build",
    [
        lambda: Bulkhead(0),
        lambda: Breaker(failures=-0.5),
        lambda: Limit("aimd", backoff=0),
        lambda: Limit("aimd", backoff=-0.5),
        lambda: Limit("aimd", backoff=1),
        lambda: Limit("gradient", smoothing=0),
        lambda: Limit("gradient", smoothing=-0.1),
        lambda: Retry(0),
        lambda: Retry(3, budget=0),
        lambda: Retry(3, budget=-0.1),
        lambda: Retry(3, budget=1.01),
    ],
)
def test_options_built_in_code_past_their_edges_are_refused(build):
    with pytest.raises(FieldError):
        build()


def test_options_built_in_code_at_their_edges_are_taken():
    Bulkhead(1)
    Limit("aimd", backoff=0.01)
    Limit("gradient", smoothing=1)
    Retry(1, budget=1)
