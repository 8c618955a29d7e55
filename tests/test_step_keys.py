"""A session target's keys (``steps``, ``session_timeout``): what they read into, and
every mistake named by its path in one line."""

from __future__ import annotations

import json
import re

import pytest

from blastradius.cluster.request_keys import redacted
from blastradius.cluster.scenario import parse_scenario, parse_target
from blastradius.targets.spec import Fixed, Uniform
from blastradius.workers.journey import Capture, Expect, Loop

URL = "http://127.0.0.1:8080"
MS = 1_000_000

SHOP = {
    "name": "shop",
    "session_timeout": "30s",
    "steps": [
        {
            "name": "login",
            "method": "post",
            "url": f"{URL}/login",
            "json": {"user": "ann", "pw": "${PW}"},
            "capture": {"token": {"json": "$.token"}, "rid": {"header": "X-Request-Id"}},
            "expect": {"status": ["2xx", 401]},
        },
        {
            "url": f"{URL}/items/${{rid}}",
            "think": "uniform(100ms,300ms)",
            "headers": {"Authorization": "Bearer ${token}", "X-Env": "${PW}"},
            "capture": {"item": {"regex": '"id": (\\d+)'}},
            "expect": {
                "headers": {"X-Cart": "c1"},
                "json": {"$.items[0].id": 7},
                "body": ["items", "id"],
            },
        },
        {"name": "pay", "method": "POST", "url": f"{URL}/pay/${{item}}", "think": "200ms"},
    ],
}


def target(**changes):
    return parse_target({**SHOP, **changes}, "targets[0]", env={"PW": "s3cret"})


def test_a_session_target_reads_into_its_journey():
    journey = target().journey
    assert journey is not None and journey.timeout_ns == 30_000 * MS
    login, items, pay = journey.steps
    assert [s.name for s in journey.steps] == ["login", "step1", "pay"]
    assert login.method == "POST" and login.json_body and login.think is None
    assert json.loads(login.prepared.data.partition(b"\r\n\r\n")[2]) == {
        "user": "ann",
        "pw": "s3cret",
    }
    assert login.captures == (
        Capture("token", "json", "$.token"),
        Capture("rid", "header", "X-Request-Id"),
    )
    assert login.expect == Expect(statuses=((200, 299), (401, 401)))
    assert b"Content-Type: application/json\r\n" in login.prepared.data
    # A header of another name (one that sorts before it, too) leaves it in place.
    accept = target(steps=[{"url": f"{URL}/", "json": {}, "headers": {"Accept": "*/*"}}])
    assert b"Content-Type: application/json\r\n" in accept.journey.steps[0].prepared.data
    assert items.think == Uniform(100 * MS, 300 * MS) and pay.think == Fixed(200 * MS)
    assert items.url.names == ("rid",) and items.url.written == f"{URL}/items/${{rid}}"
    request = items.request({"rid": "r1", "token": "t1"}).data
    assert request.startswith(b"GET /items/r1 HTTP/1.1\r\n")
    assert b"Authorization: Bearer t1\r\n" in request and b"X-Env: s3cret\r\n" in request
    assert items.expect.json == (("$.items[0].id", 7),) and items.expect.body == ("items", "id")
    assert pay.request({"item": "7"}).data.startswith(b"POST /pay/7 HTTP/1.1\r\n")


def test_a_steps_body_file_is_sent_as_its_bytes(tmp_path):
    (tmp_path / "order.bin").write_bytes(b"\x00\xff${token}")
    step = {"url": f"{URL}/o", "method": "PUT", "body_file": "order.bin"}
    parsed = parse_target({"name": "s", "steps": [step]}, "targets[0]", base=tmp_path)
    assert parsed.journey.steps[0].prepared.data.endswith(b"\r\n\r\n\x00\xff${token}")


def step_error(steps, **target_keys) -> str:
    with pytest.raises(ValueError) as error:
        parse_target({"name": "s", "steps": steps, **target_keys}, "targets[0]", env={})
    return str(error.value)


OK = {"url": f"{URL}/"}


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "targets[0].steps: expected a non-empty list of steps"),
        ("x", "targets[0].steps: expected a non-empty list of steps"),
        ([{}], "targets[0].steps[0].url: expected text, got nothing None"),
        (
            [{"url": "ftp://x"}],
            "targets[0].steps[0].url: 'ftp://x' is not an http:// or https:// URL",
        ),
        ([{**OK, "method": "BREW"}], "targets[0].steps[0].method: 'BREW' is not one of GET"),
        ([{**OK, "speed": 1}], "targets[0].steps[0].speed: unknown key (known here: name, url"),
        (
            [OK, {**OK, "url": f"{URL}/${{token}}"}],
            "targets[0].steps[1].url: ${token} is neither captured",
        ),
        # A value is there only after the step that captures it.
        (
            [{**OK, "headers": {"A": "${token}"}, "capture": {"token": {"json": "$.t"}}}],
            "targets[0].steps[0].headers.A: ${token} is neither captured",
        ),
        (
            [{**OK, "json": {"a": "${row.user}"}}],
            "targets[0].steps[0].json: ${row.user}: this target has no test data",
        ),
        (
            [{**OK, "body": "a", "json": {}}],
            "targets[0].steps[0].json: give one of body, json or body_file",
        ),
        (
            [{**OK, "json": "text"}],
            "targets[0].steps[0].json: expected a mapping or a list, got str",
        ),
        ([{**OK, "headers": ["A"]}], "targets[0].steps[0].headers: expected a mapping"),
        (
            [{**OK, "headers": {"A": None}}],
            "targets[0].steps[0].headers.A: expected text, got nothing",
        ),
        (
            [{**OK, "headers": {"Bad Name": "1"}}],
            "targets[0].steps[0].headers: 'Bad Name' is not a valid header name",
        ),
        (
            [{**OK, "think": "1s"}],
            "targets[0].steps[0].think: the first step is due when its session arrives",
        ),
        ([OK, {**OK, "think": 2}], "targets[0].steps[1].think: give a duration with its unit"),
        ([OK, {**OK, "think": "soon"}], "targets[0].steps[1].think: "),
        (
            [OK, {**OK, "think": "normal(1s)"}],
            "targets[0].steps[1].think: unknown distribution 'normal'",
        ),
        (
            [{**OK, "capture": ["token"]}],
            "targets[0].steps[0].capture: expected a mapping of names",
        ),
        (
            [{**OK, "capture": {"t": "$.t"}}],
            "targets[0].steps[0].capture.t: give one of json, regex, header",
        ),
        (
            [{**OK, "capture": {"t": {"json": "$.a", "regex": "a"}}}],
            "targets[0].steps[0].capture.t: give one of",
        ),
        (
            [{**OK, "capture": {"t": {"xpath": "//a"}}}],
            "targets[0].steps[0].capture.t.xpath: unknown key",
        ),
        (
            [{**OK, "capture": {"t": {"json": "t"}}}],
            "targets[0].steps[0].capture.t.json: 't': a JSON path begins with $",
        ),
        (
            [{**OK, "capture": {"t": {"regex": "("}}}],
            "targets[0].steps[0].capture.t.regex: not a regular expression",
        ),
        (
            [{**OK, "capture": {"1t": {"json": "$"}}}],
            "targets[0].steps[0].capture.1t: a capture's name is a word",
        ),
        (
            [{**OK, "capture": {"t": {"header": 5}}}],
            "targets[0].steps[0].capture.t.header: expected text",
        ),
        (
            [{**OK, "expect": {"status": "ok"}}],
            "targets[0].steps[0].expect.status: 'ok' is not a status",
        ),
        (
            [{**OK, "expect": {"code": 200}}],
            "targets[0].steps[0].expect.code: unknown key (known here: status",
        ),
        (
            [{**OK, "expect": {"json": {"a": 1}}}],
            "targets[0].steps[0].expect.json.a: 'a': a JSON path begins with $",
        ),
        (
            [{**OK, "expect": {"json": ["$.a"]}}],
            "targets[0].steps[0].expect.json: expected a mapping of JSON paths",
        ),
        (
            [{**OK, "expect": {"headers": "X"}}],
            "targets[0].steps[0].expect.headers: expected a mapping",
        ),
        ([{**OK, "expect": {"body": 5}}], "targets[0].steps[0].expect.body: expected text"),
        ([{**OK, "expect": "200"}], "targets[0].steps[0].expect: expected a mapping"),
        (
            [{**OK, "name": "a"}, {**OK, "name": "a"}],
            "targets[0].steps[1].name: 'a' names an earlier step",
        ),
        (
            [{**OK, "method": "HEAD", "body": "x"}],
            "targets[0].steps[0].body: a HEAD request has no body",
        ),
    ],
)
def test_bad_steps_are_named_by_their_path(steps, message):
    assert step_error(steps).startswith(message)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"session_timeout": "0s"}, "targets[0].session_timeout: must be positive"),
        ({"session_timeout": "soon"}, "targets[0].session_timeout: "),
        (
            {"url": f"{URL}/"},
            "targets[0]: give exactly one of kind (launched), url, urls, requests or steps",
        ),
        ({"method": "POST"}, "targets[0].method: unknown key"),
    ],
)
def test_bad_session_target_keys_are_named(keys, message):
    assert step_error([OK], **keys).startswith(message)


def test_session_timeout_belongs_to_session_targets():
    with pytest.raises(ValueError, match=re.escape("targets[0].session_timeout: unknown key")):
        parse_target({"name": "u", "url": f"{URL}/", "session_timeout": "1s"}, "targets[0]")


def test_sessions_arrive_open_loop():
    document = {
        "name": "n",
        "load": {"closed": {"concurrency": 2}, "duration": "1s"},
        "targets": [{"name": "s", "steps": [OK]}],
    }
    with pytest.raises(ValueError, match=re.escape("targets[0].steps: sessions arrive open loop")):
        parse_scenario(document)


def test_a_steps_header_values_are_redacted_in_what_is_written_down():
    document = {"name": "n", "targets": [{**SHOP}]}
    written = redacted(document)["targets"][0]["steps"]
    assert written[1]["headers"] == {"Authorization": "<redacted>", "X-Env": "<redacted>"}
    assert document["targets"][0]["steps"][1]["headers"]["Authorization"] == "Bearer ${token}"


# --- test data -------------------------------------------------------------------------


def with_data(tmp_path, name: str, content: bytes | str, data: dict | None = None, url=None):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    step = {"url": url or f"{URL}/u/${{row.user}}"}
    block = {"file": name, **(data or {})}
    return parse_target({"name": "s", "data": block, "steps": [step]}, "targets[0]", base=tmp_path)


def test_csv_and_json_lines_give_each_session_a_row(tmp_path):
    csv_target = with_data(tmp_path, "users.csv", 'user, pw\r\nann,"a,1"\n\nbob,b2\n')
    data = csv_target.journey.data
    assert (data.columns, data.rows, data.pick) == (
        ("user", "pw"),
        (("ann", "a,1"), ("bob", "b2")),
        "cycle",
    )
    step = csv_target.journey.steps[0]
    assert step.request(data.values(1, 0)).data.startswith(b"GET /u/bob HTTP/1.1\r\n")
    lines = '{"user": "ann", "n": 1}\n\n{"user": "bob", "n": {"a": true}}\n'
    jsonl = with_data(tmp_path, "users.jsonl", lines, {"pick": "unique"}).journey.data
    assert (jsonl.columns, jsonl.rows, jsonl.pick) == (
        ("user", "n"),
        (("ann", "1"), ("bob", '{"a":true}')),
        "unique",
    )
    bom = with_data(tmp_path, "bom.ndjson", b'\xef\xbb\xbf{"user": "c"}\n', {"pick": "random"})
    assert bom.journey.data.rows == (("c",),)


@pytest.mark.parametrize(
    ("name", "content", "data", "message"),
    [
        ("u.txt", "user\nann\n", {}, "targets[0].data.file: 'u.txt': give a .csv or a .jsonl file"),
        ("u.csv", "", {}, "targets[0].data.file: empty: a CSV file needs a header row"),
        ("u.csv", "user\n", {}, "targets[0].data.file: no rows"),
        ("u.csv", "user,pw\nann\n", {}, "targets[0].data.file: row 1 has 1 values for 2 columns"),
        ("u.csv", b"user\n\xff\n", {}, "targets[0].data.file: not UTF-8 text"),
        (
            "u.jsonl",
            '{"user": "a"}\n[1]\n',
            {},
            "targets[0].data.file: line 2: expected an object, got list",
        ),
        (
            "u.jsonl",
            '{"user": "a"}\n{"usr": "b"}\n',
            {},
            "targets[0].data.file: line 2 has keys ['usr'], not ['user']",
        ),
        ("u.jsonl", '{"user": "a"}\n{user\n', {}, "targets[0].data.file: line 2 is not JSON"),
        (
            "u.csv",
            "user\nann\n",
            {"pick": "first"},
            "targets[0].data.pick: 'first' is not one of unique",
        ),
        (
            "u.csv",
            "user\nann\n",
            {"order": "x"},
            "targets[0].data.order: unknown key (known here: file, pick)",
        ),
        # A column the steps name but the file lacks is named with the step's field.
        (
            "u.csv",
            "name\nann\n",
            {},
            "targets[0].steps[0].url: ${row.user}: the test data has no column 'user'",
        ),
    ],
)
def test_bad_test_data_is_named_by_its_path(tmp_path, name, content, data, message):
    with pytest.raises(ValueError) as error:
        with_data(tmp_path, name, content, data)
    assert str(error.value).startswith(message)


def test_test_data_must_be_a_file_that_fits_in_the_plan(tmp_path, monkeypatch):
    from blastradius.cluster import step_keys

    with pytest.raises(ValueError, match=re.escape("targets[0].data.file: cannot read 'gone.csv'")):
        parse_target(
            {"name": "s", "data": {"file": "gone.csv"}, "steps": [OK]}, "targets[0]", base=tmp_path
        )
    monkeypatch.setattr(step_keys, "DATA_LIMIT", 3 << 20)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "targets[0].data.file: 4 MiB: test data travels in the plan, 3 MiB at most; "
            "give a URI every node reads (s3://, gs://, file:// on a shared volume)"
        ),
    ):
        with_data(tmp_path, "big.csv", "user\n" + "x" * (4 << 20) + "\n")
    with pytest.raises(ValueError, match=re.escape("targets[0].data: expected a mapping")):
        parse_target({"name": "s", "data": "users.csv", "steps": [OK]}, "targets[0]", base=tmp_path)


# --- repeats and loops ----------------------------------------------------------------


def test_loops_and_repeats_read_into_the_journey():
    steps = [
        {"name": "login", "url": f"{URL}/login", "capture": {"token": {"json": "$.t"}}},
        {
            "loop": "2..4",
            "steps": [
                {"name": "list", "url": f"{URL}/items", "repeat": 2},
                {"name": "view", "url": f"{URL}/items/${{token}}", "think": "10ms"},
            ],
        },
        {"name": "pay", "url": f"{URL}/pay", "repeat": "1..2"},
    ]
    journey = parse_target({"name": "s", "steps": steps}, "targets[0]").journey
    assert [s.name for s in journey.steps] == ["login", "list", "view", "pay"]
    assert [s.repeat for s in journey.steps] == [(1, 1), (2, 2), (1, 1), (1, 2)]
    assert journey.loops == (Loop(1, 2, (2, 4)),)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{**OK, "repeat": 0}], "targets[0].steps[0].repeat: 0..0: at least 1"),
        ([{**OK, "repeat": "many"}], "targets[0].steps[0].repeat: 'many' is not a count"),
        ([{"loop": 0, "steps": [OK]}], "targets[0].steps[0].loop: 0..0: at least 1"),
        ([{"loop": 2}], "targets[0].steps[0].steps: expected a non-empty list of steps"),
        ([{"loop": 2, "steps": []}], "targets[0].steps[0].steps: expected a non-empty list"),
        ([{"loop": 2, "steps": [OK], "think": "1s"}], "targets[0].steps[0].think: unknown key"),
        (
            [OK, {"loop": 2, "steps": [OK, {"loop": 2, "steps": [OK]}]}],
            "targets[0].steps[1].steps[1].loop: loops cannot nest",
        ),
        (
            [{**OK, "name": "a"}, {"loop": 2, "steps": [{**OK, "name": "a"}]}],
            "targets[0].steps[1].steps[0].name: 'a' names an earlier step",
        ),
        (
            [OK, {"loop": 2, "steps": [{**OK, "headers": {"A": "${nope}"}}]}],
            "targets[0].steps[1].steps[0].headers.A: ${nope} is neither",
        ),
    ],
)
def test_bad_loops_and_repeats_are_named_by_their_path(steps, message):
    assert step_error(steps).startswith(message)


def test_test_data_at_a_uri_is_counted_here_and_read_by_each_generator(tmp_path):
    write = tmp_path / "users.csv"
    write.write_text("user\nann\nbob\n")
    uri = write.as_uri()
    target = parse_target(
        {
            "name": "s",
            "data": {"file": uri, "pick": "unique"},
            "steps": [{"url": f"{URL}/${{row.user}}"}],
        },
        "targets[0]",
    )
    data = target.journey.data
    assert (data.columns, data.rows, data.uri, data.size) == (("user",), (), uri, 2)
    assert target.journey.sessions(10) == 2
    loaded = data.loaded()  # as a generator reads it
    assert loaded.rows == (("ann",), ("bob",)) and loaded.values(1, 0) == {"row.user": "bob"}
    write.write_text("user\nann\n")
    with pytest.raises(ValueError, match="changed since the scenario was read"):
        data.loaded()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "file:///no/such/users.csv",
            "targets[0].data.file: cannot read 'file:///no/such/users.csv'",
        ),
        (
            "nosuch://bucket/users.csv",
            "targets[0].data.file: cannot read 'nosuch://bucket/users.csv'",
        ),
    ],
)
def test_test_data_at_a_uri_that_cannot_be_read_is_named(name, message):
    with pytest.raises(ValueError) as error:
        parse_target({"name": "s", "data": {"file": name}, "steps": [OK]}, "targets[0]")
    assert str(error.value).startswith(message)


def test_an_environment_value_in_a_json_body_is_escaped_as_json_string_text():
    step = {"url": f"{URL}/login", "method": "POST", "json": {"pw": "${PW}", "n": 1}}
    parsed = parse_target({"name": "s", "steps": [step]}, "targets[0]", env={"PW": 'a"b\\'})
    body = parsed.journey.steps[0].prepared.data.partition(b"\r\n\r\n")[2]
    assert json.loads(body) == {"pw": 'a"b\\', "n": 1}
