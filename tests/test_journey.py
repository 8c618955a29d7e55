"""A session's steps, pure: texts with session values, captures, expectations."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blastradius.targets.spec import Fixed
from blastradius.targets.validation import FieldError
from blastradius.workers.journey import (
    MISSING,
    Capture,
    Expect,
    Journey,
    Loop,
    Response,
    Step,
    TestData,
    Text,
    as_text,
    compile_text,
    find_json,
    parse_json_path,
    parse_statuses,
    parse_times,
)

S, MS = 1_000_000_000, 1_000_000
SESSION = {"token", "item", "row.user", "row.password"}
ENV = {"API_HOST": "api.internal", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "parts", "names"),
    [
        ("plain", ("plain",), ()),
        ("", ("",), ()),
        ("Bearer ${token}", ("Bearer ", ""), ("token",)),
        ("${token}${item}", ("", "", ""), ("token", "item")),
        (
            "/users/${row.user}/items/${item}?x=1",
            ("/users/", "/items/", "?x=1"),
            ("row.user", "item"),
        ),
        # The environment's names are resolved at once; $$ is a literal $.
        ("https://${API_HOST}/a", ("https://api.internal/a",), ()),
        ("${EMPTY}x", ("x",), ()),
        ("$$${token}$$", ("$", "$"), ("token",)),
        ("cost: $5, ${ token}", ("cost: $5, ${ token}",), ()),
    ],
)
def test_compile_text_splits_at_the_session_values(text, parts, names):
    compiled = compile_text(text, SESSION, ENV)
    assert compiled == Text(parts, names)


@pytest.mark.parametrize(
    ("text", "session", "message"),
    [
        (
            "${nope}",
            SESSION,
            "${nope} is neither captured by an earlier step nor set in the environment",
        ),
        ("${row.email}", SESSION, "${row.email}: the test data has no column 'email'"),
        ("${row.user}", {"token"}, "${row.user}: this target has no test data (data:)"),
        # A session's name is never looked up in the environment, nor a dotted name.
        ("${token.x}", SESSION, "${token.x} is neither captured"),
    ],
)
def test_compile_text_names_what_it_cannot_fill(text, session, message):
    with pytest.raises(FieldError) as error:
        compile_text(text, session, ENV, path="targets[0].steps[1].url")
    assert error.value.path == "targets[0].steps[1].url"
    assert message in error.value.problem


def test_render_fills_each_slot_in_order():
    text = compile_text("/u/${row.user}/t/${token}/again/${row.user}", SESSION, ENV)
    assert text.render({"row.user": "ann", "token": "t1"}) == "/u/ann/t/t1/again/ann"
    assert Text(("no slots",)).render({}) == "no slots"
    with pytest.raises(ValueError, match="one more part"):
        Text(("a", "b"), ())


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.token", ("token",)),
        ("$.items[0].id", ("items", 0, "id")),
        ("$.items[-1]", ("items", -1)),
        ("$['a key'].b", ("a key", "b")),
        ('$["it\'s"]', ("it's",)),
        ("$['quote \\' inside']", ("quote ' inside",)),
        ("$.with-dash_1", ("with-dash_1",)),
        ("$[2][3]", (2, 3)),
    ],
)
def test_json_paths_read(path, steps):
    assert parse_json_path(path) == steps


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("token", "begins with $"),
        ("$.", "cannot read '.'"),
        ("$..deep", "cannot read '..deep'"),
        ("$.items[*]", "cannot read '[*]'"),
        ("$.a[0", "cannot read '[0'"),
        ("$['open", "cannot read"),
    ],
)
def test_json_paths_that_are_not_read(path, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_json_path(path)


DOCUMENT = {"token": "abc", "items": [{"id": 7}, {"id": 8}], "n": None, "ok": True}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$.token", "abc"),
        ("$.items[0].id", 7),
        ("$.items[1].id", 8),
        ("$.items[-1].id", 8),
        ("$.items[-2].id", 7),
        ("$.items[2]", MISSING),
        ("$.items[5]", MISSING),  # well past the end
        ("$.items[-3]", MISSING),
        ("$.n", None),
        ("$.none", MISSING),
        ("$.token[0]", MISSING),  # a string is not a list
        ("$.items.id", MISSING),  # a list is not a mapping
        ("$", DOCUMENT),
    ],
)
def test_find_json(path, value):
    assert find_json(DOCUMENT, parse_json_path(path)) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("abc", "abc"),
        (7, "7"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        ({"a": [1]}, '{"a":[1]}'),
    ],
)
def test_a_captured_value_as_text(value, text):
    assert as_text(value) == text


RESPONSE = Response(
    200,
    (
        (b"Content-Type", b"application/json"),
        (b"X-Request-Id", b" r-1 "),
        (b"x-request-id", b"r-2"),
    ),
    b'{"token": "abc", "items": [{"id": 7}], "ok": true, "n": 1}',
)


@pytest.mark.parametrize(
    ("source", "expression", "value"),
    [
        ("json", "$.token", "abc"),
        ("json", "$.items[0].id", "7"),
        ("json", "$.ok", "true"),
        ("json", "$.items", '[{"id":7}]'),
        ("json", "$.absent", None),
        ("regex", r'"token": "(\w+)"', "abc"),
        ("regex", r"items", "items"),  # no group: the whole match
        ("regex", r"(nothing)", None),
        ("header", "x-request-id", "r-1"),  # the first, any case, trimmed
        ("header", "Content-Type", "application/json"),
        ("header", "Location", None),
    ],
)
def test_captures(source, expression, value):
    assert Capture("v", source, expression).take(RESPONSE) == value


def test_a_capture_from_a_body_that_is_not_json_finds_nothing():
    capture = Capture("token", "json", "$.token")
    assert capture.take(Response(200, (), b"<html>")) is None
    assert capture.take(Response(200, (), b"\xff\xfe")) is None
    assert capture.missing() == "capture token: no json '$.token' in the response"
    # JSON null is a value: it is captured, and the body is parsed once.
    null = Response(200, (), b"null")
    assert Capture("v", "json", "$").take(null) == "null"
    assert null.json() is None


@pytest.mark.parametrize(
    ("name", "source", "expression", "path", "message"),
    [
        ("1st", "json", "$.a", "1st", "a capture's name is a word"),
        ("a-b", "json", "$.a", "a-b", "a capture's name is a word"),
        ("row", "json", "$.a", "row", "a capture's name is a word"),
        ("v", "xpath", "//a", "v", "capture from one of json, regex, header"),
        ("v", "json", "a", "v.json", "begins with $"),
        ("v", "regex", "(", "v.regex", "not a regular expression"),
        ("v", "header", "", "v.header", "name the header"),
    ],
)
def test_bad_captures_are_named(name, source, expression, path, message):
    with pytest.raises(FieldError) as error:
        Capture(name, source, expression)
    assert error.value.path == path
    assert message in error.value.problem


@pytest.mark.parametrize(
    ("value", "ranges"),
    [
        (200, ((200, 200),)),
        ("2xx", ((200, 299),)),
        ("4XX", ((400, 499),)),
        ("200-204", ((200, 204),)),
        ("200 - 204", ((200, 204),)),
        ([200, "3xx", "404"], ((200, 200), (300, 399), (404, 404))),
        (100, ((100, 100),)),
        (599, ((599, 599),)),
    ],
)
def test_statuses(value, ranges):
    assert parse_statuses(value) == ranges


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "give at least one status"),
        (True, "True is not a status"),
        (2.5, "2.5 is not a status"),
        ("ok", "'ok' is not a status"),
        ("6xx", "'6xx' is not a status"),
        (99, "99 is not a status"),
        (600, "600: statuses run from 100 to 599"),
        ("299-200", "'299-200': statuses run from 100 to 599, low to high"),
        ([200, None], "None is not a status"),
    ],
)
def test_bad_statuses_are_named(value, message):
    with pytest.raises(FieldError) as error:
        parse_statuses(value, "targets[0].steps[0].expect.status")
    assert error.value.path == "targets[0].steps[0].expect.status"
    assert message in error.value.problem


@pytest.mark.parametrize(
    ("expect", "failure"),
    [
        (Expect(), None),  # any 2xx
        (Expect(statuses=((201, 201),)), "expect status: got 200"),
        (Expect(statuses=((100, 199), (200, 200))), None),
        (Expect(headers=(("content-type", "application/json"),)), None),
        (
            Expect(headers=(("X-Request-Id", "r-2"),)),
            "expect header X-Request-Id: got 'r-1', not 'r-2'",
        ),
        (Expect(headers=(("Location", "/"),)), "expect header Location: got None, not '/'"),
        (Expect(json=(("$.token", "abc"), ("$.items[0].id", 7))), None),
        (Expect(json=(("$.n", 1.0),)), None),  # one number type
        (Expect(json=(("$.ok", 1),)), "expect json $.ok: got true, not 1"),
        (Expect(json=(("$.n", True),)), "expect json $.n: got 1, not true"),
        (Expect(json=(("$.items", [{"id": 7}]),)), None),
        (Expect(json=(("$.items", [{"id": True}]),)), 'got [{"id":7}], not [{"id":true}]'),
        (Expect(json=(("$.items", [{"id": 7}, 1]),)), "expect json $.items: got"),
        (Expect(json=(("$.items", {"id": 7}),)), "expect json $.items: got"),
        (Expect(json=(("$.gone", None),)), "expect json $.gone: not in the response"),
        (Expect(body=("token", "items")), None),
        (Expect(body=("token", "secret")), "expect body: no 'secret' in it"),
        # The first failure is the one named: status, then headers, then JSON, then body.
        (Expect(statuses=((500, 599),), body=("secret",)), "expect status: got 200"),
        (Expect(json=(("$.gone", 1),), body=("secret",)), "expect json $.gone: not in"),
    ],
)
def test_expectations(expect, failure):
    got = expect.failure(RESPONSE)
    if failure is None:
        assert got is None
    else:
        assert (got is not None and got.startswith(failure)) or failure in (got or "")


@pytest.mark.parametrize(("status", "ok"), [(199, False), (200, True), (299, True), (300, False)])
def test_without_a_status_a_step_expects_2xx(status, ok):
    assert Expect().status_ok(status) is ok
    assert (Expect().failure(Response(status, (), b"")) is None) is ok


def test_a_bad_json_path_in_an_expectation_is_named():
    with pytest.raises(FieldError) as error:
        Expect(json=(("token", "x"),))
    assert error.value.path == "json.token"


# --- a step's request ------------------------------------------------------------------

URL = "http://127.0.0.1:8080"


def text(value: str) -> Text:
    return compile_text(value, SESSION, ENV)


def test_a_step_with_nothing_of_a_session_is_prepared_once():
    step = Step("home", text(f"{URL}/"), headers=(("X-Env", text("${API_HOST}")),))
    assert step.prepared is not None and step.request({}) is step.prepared
    assert b"X-Env: api.internal\r\n" in step.prepared.data
    assert not step.keeps and not step.prepared.keep
    with_value = Step("items", text(f"{URL}/items/${{item}}"))
    assert with_value.prepared is None


def test_a_steps_request_carries_the_sessions_values():
    step = Step(
        "pay",
        text(f"{URL}/pay/${{item}}?u=${{row.user}}"),
        method="POST",
        headers=(("Authorization", text("Bearer ${token}")),),
        body=text('{"note": "${token}"}'),
        json_body=True,
    )
    values = {"item": "7", "row.user": "ann lee", "token": 'say "hi"\\'}
    data = step.request(values).data
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /pay/7?u=ann%20lee HTTP/1.1\r\n")
    assert b'\r\nAuthorization: Bearer say "hi"\\\r\n' in head + b"\r\n"
    # In a JSON body a value is escaped as JSON string text: the body stays JSON.
    assert json.loads(body) == {"note": 'say "hi"\\'}
    assert f"Content-Length: {len(body)}".encode() in head
    # Not JSON: the value goes in as it is.
    plain = Step("p", text(f"{URL}/"), method="POST", body=text("t=${token}"))
    assert plain.request({"token": 'a"b'}).data.endswith(b'\r\n\r\nt=a"b')


SLOTTED = [
    Step(
        "pay",
        text(f"{URL}/pay/${{item}}?u=${{row.user}}&t=${{token}}#f${{item}}"),
        method="POST",
        headers=(("Authorization", text("Bearer ${token}")), ("X-U", text("${row.user}"))),
        body=text('{"note": "${token}", "u": "${row.user}"}'),
        json_body=True,
    ),
    Step("plain", text(f"{URL}/${{item}}/x"), method="PUT", body=text("t=${token}&i=${item}")),
    Step("query", text(f"{URL}/q?${{token}}"), headers=(("X-I", text("<${item}>")),)),
    Step("get", text(f"{URL}/a${{item}}b"), captures=(Capture("v", "header", "X-A"),)),
    Step("file", text(f"{URL}/${{item}}"), method="POST", raw_body=b"\x00bytes"),
]
UNSLOTTED = [
    Step("host", text("http://${row.user}/x")),  # a value in the host
    Step("head", text(f"{URL}/${{item}}"), method="HEAD"),
]
VALUE = st.text(
    st.sampled_from(
        [
            "a",
            "7",
            " ",
            "?",
            "#",
            "%",
            "/",
            "&",
            "=",
            "\t",
            "\r",
            "\n",
            "\0",
            '"',
            "\\",
            "é",
            "日",
            "\x7f",
            "+",
            "~",
        ]
    ),
    max_size=6,
)


def _prepared(make):
    try:
        return make()
    except FieldError as error:
        return ("error", error.path, error.problem)


@pytest.mark.parametrize("step", SLOTTED, ids=[s.name for s in SLOTTED])
@given(item=VALUE, token=VALUE, user=VALUE)
@settings(max_examples=300, deadline=None)
def test_a_slotted_request_is_the_one_prepared_in_full(step, item, token, user):
    # A step's request is its bytes around its values, joined; whatever the values,
    # it is exactly the request a full preparation makes, or the same error.
    values = {"item": item, "token": token, "row.user": user}
    assert step._slots is not None
    assert _prepared(lambda: step.request(values)) == _prepared(lambda: step._prepare(values))
    if all(value.isalnum() and value.isascii() for value in values.values()):  # joined, then
        assert step._slots.render(values, step._body(values)) == step._prepare(values)


@pytest.mark.parametrize("step", UNSLOTTED, ids=[s.name for s in UNSLOTTED])
def test_a_value_in_the_host_or_a_head_request_is_prepared_in_full(step):
    values = {"item": "7", "token": "t", "row.user": "h"}
    assert step._slots is None and step.prepared is None
    assert step.request(values) == step._prepare(values)


def test_a_steps_own_text_like_a_mark_is_prepared_in_full():
    step = Step("s", text(f"{URL}/brslot0q/${{item}}"))
    assert step._slots is None
    assert step.request({"item": "7"}).data.startswith(b"GET /brslot0q/7 HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("captures", "expect", "keeps"),
    [
        ((), Expect(), False),
        ((), Expect(statuses=((404, 404),)), False),  # a status needs no body
        ((Capture("v", "header", "X-A"),), Expect(), True),
        ((), Expect(headers=(("X-A", "1"),)), True),
        ((), Expect(json=(("$.a", 1),)), True),
        ((), Expect(body=("ok",)), True),
    ],
)
def test_a_step_reads_its_response_only_when_it_must(captures, expect, keeps):
    step = Step("s", text(f"{URL}/"), captures=captures, expect=expect)
    assert step.keeps is keeps and step.request({}).keep is keeps


def test_a_value_that_cannot_go_on_the_wire_is_named_when_the_request_is_made():
    step = Step("s", text(f"{URL}/"), headers=(("Authorization", text("Bearer ${token}")),))
    with pytest.raises(FieldError, match="a header value cannot hold a line break"):
        step.request({"token": "a\r\nX-Evil: 1"})
    url = Step("s", text("${token}"))
    with pytest.raises(FieldError, match="is not an http:// or https:// URL"):
        url.request({"token": "ftp://x"})
    head = Step("s", text(f"{URL}/"), method="HEAD", body=text("${token}"))
    with pytest.raises(FieldError, match="a HEAD request has no body"):
        head.request({"token": "x"})
    assert head.request({"token": ""}).head


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "BREW"}, "'BREW' is not one of GET"),
        (
            {"captures": (Capture("v", "header", "A"), Capture("v", "header", "B"))},
            "a name is captured twice",
        ),
        ({"url": text("not a url")}, "is not an http:// or https:// URL"),
    ],
)
def test_bad_steps_are_named_when_built(kwargs, message):
    with pytest.raises(FieldError, match=re.escape(message)):
        Step(**{"name": "s", "url": text(f"{URL}/"), **kwargs})


def test_a_journey_is_checked_when_built():
    first = Step("a", text(f"{URL}/"))
    later = Step("b", text(f"{URL}/"), think=Fixed(MS))
    assert Journey((first, later), timeout_ns=S).steps == (first, later)
    with pytest.raises(FieldError, match="at least one step"):
        Journey(())
    with pytest.raises(FieldError, match="the first step is due when its session arrives"):
        Journey((later, first))
    for timeout in (0, -1):
        with pytest.raises(FieldError, match="session_timeout: must be positive"):
            Journey((first,), timeout_ns=timeout)


# --- test data -------------------------------------------------------------------------

USERS = TestData(("user", "pw"), (("ann", "a1"), ("bob", "b2"), ("cy", "c3")))


def test_each_session_takes_a_row_by_its_index_in_the_whole_run():
    unique = TestData(USERS.columns, USERS.rows, "unique")
    assert [unique.row(i, seed=0) for i in range(3)] == [0, 1, 2]
    assert [USERS.row(i, seed=0) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]  # cycle
    assert USERS.values(4, seed=0) == {"row.user": "bob", "row.pw": "b2"}
    assert USERS.names == ("row.user", "row.pw")
    # Random: seeded, the same for every generator, and every row drawn in time.
    drawn = TestData(USERS.columns, USERS.rows, "random")
    rows = [drawn.row(i, seed=7) for i in range(300)]
    assert rows == [drawn.row(i, seed=7) for i in range(300)]
    assert rows != [drawn.row(i, seed=8) for i in range(300)]
    counts = np.bincount(rows, minlength=3)
    assert counts.min() > 60  # 100 each expected


@pytest.mark.parametrize(
    ("pick", "arrivals", "sessions"),
    [("unique", 2, 2), ("unique", 3, 3), ("unique", 10, 3), ("cycle", 10, 10), ("random", 10, 10)],
)
def test_unique_rows_bound_the_sessions(pick, arrivals, sessions):
    data = TestData(USERS.columns, USERS.rows, pick)
    assert Journey((Step("a", text(f"{URL}/")),), data=data).sessions(arrivals) == sessions
    assert Journey((Step("a", text(f"{URL}/")),)).sessions(arrivals) == arrivals


@pytest.mark.parametrize(
    ("columns", "rows", "pick", "path", "message"),
    [
        (("a",), (("1",),), "first", "pick", "'first' is not one of unique, cycle, random"),
        (("a",), (), "cycle", "file", "no rows"),
        (("a", "a"), (("1", "2"),), "cycle", "file", "a column is named twice"),
        (("a", "b"), (("1", "2"), ("3",)), "cycle", "file", "row 2 has 1 values for 2 columns"),
    ],
)
def test_bad_test_data_is_named(columns, rows, pick, path, message):
    with pytest.raises(FieldError) as error:
        TestData(columns, rows, pick)
    assert (error.value.path, error.value.problem) == (path, message)


# --- repeats and loops ----------------------------------------------------------------


def steps_of(*repeats: tuple[int, int]) -> tuple[Step, ...]:
    return tuple(Step(f"s{i}", text(f"{URL}/"), repeat=r) for i, r in enumerate(repeats))


@pytest.mark.parametrize(
    ("repeats", "loops", "order", "mean"),
    [
        (((1, 1),) * 3, (), (0, 1, 2), 3),
        (((1, 1), (3, 3), (1, 1)), (), (0, 1, 1, 1, 2), 5),
        (((1, 1),) * 4, (Loop(1, 2, (2, 2)),), (0, 1, 2, 1, 2, 3), 6),
        (((1, 1), (2, 2), (1, 1)), (Loop(1, 2, (2, 2)),), (0, 1, 1, 2, 1, 1, 2), 7),
        (((1, 1),) * 3, (Loop(0, 0, (2, 2)), Loop(2, 2, (3, 3))), (0, 0, 1, 2, 2, 2), 6),
        (((1, 1),) * 2, (Loop(0, 1, (1, 1)),), (0, 1), 2),
    ],
)
def test_a_session_sends_its_steps_repeated_and_looped(repeats, loops, order, mean):
    journey = Journey(steps_of(*repeats), loops=loops)
    assert journey.fixed
    assert journey.order(0, seed=0) == journey.order(99, seed=5) == order
    assert journey.mean_rows() == mean == len(order)


def test_ranges_are_drawn_per_session_seeded_and_every_count_is_drawn():
    journey = Journey(steps_of((1, 1), (1, 3)), loops=(Loop(0, 1, (2, 4)),))
    assert not journey.fixed
    orders = [journey.order(session, seed=1) for session in range(400)]
    assert orders == [journey.order(session, seed=1) for session in range(400)]
    assert orders != [journey.order(session, seed=2) for session in range(400)]
    rounds = {order.count(0) for order in orders}
    assert rounds == {2, 3, 4}
    for order in orders:  # each round is s0, then s1 one to three times
        text_order = "".join(map(str, order))
        assert re.fullmatch(r"(01{1,3}){2,4}", text_order), text_order
    assert journey.mean_rows() == 3 * (1 + 2)
    mean = sum(map(len, orders)) / len(orders)
    assert 8 < mean < 10  # 9 expected


def test_drawn_steps_are_any_of_the_steps_as_likely_seeded_per_session():
    journey = Journey(steps_of((1, 1), (1, 1), (1, 1), (1, 1)), draws=5)
    assert not journey.fixed and journey.mean_rows() == 5
    orders = [journey.order(session, seed=1) for session in range(2000)]
    assert orders == [journey.order(session, seed=1) for session in range(2000)]
    assert orders != [journey.order(session, seed=2) for session in range(2000)]
    assert {len(order) for order in orders} == {5}
    counts = Counter(step for order in orders for step in order)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(2300 < n < 2700 for n in counts.values()), counts  # 2,500 each expected
    # The essay's arithmetic: a step drawn a quarter of the time is in 1 - 0.75^5 of
    # the sessions (0.763), not in a quarter of them.
    with_last = sum(3 in order for order in orders) / len(orders)
    assert with_last == pytest.approx(1 - 0.75**5, abs=0.03)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"draws": -1}, "draws: a count"),
        ({"draws": 2, "loops": (Loop(0, 1, (1, 1)),)}, "draws: a count of steps drawn, with no"),
        ({"draws": 2, "steps": steps_of((1, 1), (1, 2))}, "draws: a count of steps drawn"),
    ],
)
def test_drawn_steps_have_no_loop_or_repeat_range(kwargs, message):
    with pytest.raises(FieldError, match=message):
        Journey(**{"steps": steps_of((1, 1), (1, 1)), **kwargs})


@pytest.mark.parametrize(
    ("value", "times"),
    [(1, (1, 1)), (3, (3, 3)), ("2..5", (2, 5)), (" 2 .. 2 ", (2, 2)), ("1..10", (1, 10))],
)
def test_times(value, times):
    assert parse_times(value, "repeat") == times


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "0..0: at least 1, low to high"),
        ("5..2", "5..2: at least 1, low to high"),
        ("0..2", "0..2: at least 1"),
        (True, "True is not a count (3) or a range (2..5)"),
        ("2-5", "'2-5' is not a count"),
        (2.5, "2.5 is not a count"),
        ("..3", "'..3' is not a count"),
    ],
)
def test_bad_times_are_named(value, message):
    with pytest.raises(FieldError) as error:
        parse_times(value, "targets[0].steps[1].repeat")
    assert error.value.path == "targets[0].steps[1].repeat"
    assert error.value.problem.startswith(message)


@pytest.mark.parametrize(
    ("loops", "message"),
    [
        ((Loop(0, 1, (1, 1)), Loop(1, 2, (1, 1))), "loops cannot nest or overlap"),
        ((Loop(0, 2, (1, 1)), Loop(1, 1, (1, 1))), "loops cannot nest or overlap"),
        ((Loop(2, 3, (1, 1)),), "loops cannot nest or overlap"),  # past the last step
    ],
)
def test_loops_that_overlap_are_refused(loops, message):
    with pytest.raises(FieldError, match=message):
        Journey(steps_of((1, 1), (1, 1), (1, 1)), loops=loops)


def test_a_loop_and_a_repeat_are_checked_when_built():
    with pytest.raises(FieldError, match="a loop holds at least one step"):
        Loop(2, 1, (1, 1))
    with pytest.raises(FieldError, match=re.escape("loop: 0..0: at least 1")):
        Loop(0, 0, (0, 0))
    with pytest.raises(FieldError, match=re.escape("repeat: 3..2")):
        Step("s", text(f"{URL}/"), repeat=(3, 2))
    with pytest.raises(FieldError, match="a loop holds at least one step"):
        Loop(-1, 0, (1, 1))


@pytest.mark.parametrize("method", ["DELETE", "GET", "POST", "OPTIONS"])
def test_only_a_head_request_may_not_have_a_body(method):
    step = Step("s", text(f"{URL}/${{item}}"), method=method, body=text("${token}"))
    assert step.request({"item": "1", "token": "x"}).data.endswith(b"\r\n\r\nx")


@pytest.mark.parametrize(
    ("status", "ok"), [(199, False), (200, True), (250, True), (299, True), (300, False)]
)
def test_a_status_range_holds_every_status_inside_it(status, ok):
    assert Expect(statuses=((200, 299),)).status_ok(status) is ok
    assert Expect(statuses=((100, 101), (200, 299))).status_ok(status) is ok
