"""What users send: request templates into exact bytes, scenario keys, weights, secrets."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from blastradius.cluster.scenario import parse_scenario, parse_target, redacted
from blastradius.cluster.url_run import UrlRun, document, flag_message, url_scenario
from blastradius.targets.validation import FieldError
from blastradius.workers.client import PreparedRequest
from blastradius.workers.template import RequestTemplate, expand_env, pick, redact_url, weights_of


def head_lines(endpoint: PreparedRequest) -> list[str]:
    head, _, _ = endpoint.data.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n")


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("http://[::1]/x", "GET /x HTTP/1.1", "[::1]"),
        ("https://[::1]:443/x", "GET /x HTTP/1.1", "[::1]"),
        ("http://[::1]:8080/x", "GET /x HTTP/1.1", "[::1]:8080"),
        ("http://h/a b", "GET /a%20b HTTP/1.1", "h"),
        ("http://h/%C3%A9?q=a b&r=%2F", "GET /%C3%A9?q=a%20b&r=%2F HTTP/1.1", "h"),
        ("http://h/é", "GET /%C3%A9 HTTP/1.1", "h"),
        ("http://h/p#frag", "GET /p HTTP/1.1", "h"),
        ("http://bücher.example/", "GET / HTTP/1.1", "xn--bcher-kva.example"),
    ],
)
def test_urls_become_exact_request_lines_and_hosts(url, request_line, host):
    lines = head_lines(PreparedRequest.from_url(url))
    assert lines[0] == request_line
    assert lines[1] == f"Host: {host}"


def test_credentials_in_a_url_become_basic_auth_and_are_not_sent_in_the_host():
    lines = head_lines(PreparedRequest.from_url("http://al%40x:p%3Aw@h:81/"))
    assert "Host: h:81" in lines
    basic = next(line for line in lines if line.startswith("Authorization: Basic "))
    assert base64.b64decode(basic.split()[-1]) == b"al@x:p:w"


def test_a_template_sets_method_headers_and_content_length():
    template = RequestTemplate(
        "http://h/o", "POST", (("X-A", "1"), ("user-agent", "mine")), b'{"k":1}'
    )
    endpoint = PreparedRequest.build(template)
    lines = head_lines(endpoint)
    assert lines[0] == "POST /o HTTP/1.1"
    assert "X-A: 1" in lines and "user-agent: mine" in lines
    assert not any(line.startswith("User-Agent:") for line in lines)  # replaced, not doubled
    assert "Content-Length: 7" in lines
    assert endpoint.data.endswith(b'\r\n\r\n{"k":1}')
    assert not endpoint.head
    put = PreparedRequest.build(RequestTemplate("http://h/", "PUT"))
    assert "Content-Length: 0" in head_lines(put)
    get = PreparedRequest.from_url("http://h/")
    assert not any("Content-Length" in line for line in head_lines(get))
    assert PreparedRequest.build(RequestTemplate("http://h/", "HEAD")).head


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "BREW"}, r"^method: 'BREW' is not one of GET, HEAD"),
        ({"headers": (("Bad Name", "v"),)}, r"^headers: 'Bad Name' is not a valid header name"),
        ({"headers": (("X", "a\r\nY: b"),)}, r"^headers\.X: a header value cannot hold"),
        ({"headers": (("X", "☃"),)}, r"^headers\.X: only Latin-1"),
        ({"headers": (("Content-Length", "3"),)}, r"^headers\.Content-Length: set from the body"),
        ({"method": "HEAD", "body": b"x"}, r"^body: a HEAD request has no body"),
        ({"weight": -1.0}, r"^weight: must be a number >= 0"),
    ],
)
def test_bad_templates_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RequestTemplate("http://h/", **kwargs)


def test_environment_references_expand_and_missing_ones_are_named():
    env = {"TOKEN": "abc", "EMPTY": ""}
    assert expand_env("Bearer ${TOKEN}${EMPTY} $$5 $x", env) == "Bearer abc $5 $x"
    with pytest.raises(ValueError, match=r"^\$\{NOPE\} is not set"):
        expand_env("${NOPE}", env)


def test_cycled_templates_follow_the_global_index():
    assert pick(np.arange(7), 3, None, 0).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_weighted_templates_are_reproducible_shared_and_in_proportion():
    indices = np.arange(200_000)
    picks = pick(indices, 3, (6.0, 3.0, 1.0), seed=7)
    assert picks.tolist() == pick(indices, 3, (6.0, 3.0, 1.0), seed=7).tolist()
    # Two workers interleaving the schedule pick exactly what one would.
    evens, odds = pick(indices[::2], 3, (6, 3, 1), 7), pick(indices[1::2], 3, (6, 3, 1), 7)
    assert np.concatenate([evens, odds]).tolist() == picks[::2].tolist() + picks[1::2].tolist()
    shares = np.bincount(picks, minlength=3) / len(picks)
    assert np.allclose(shares, [0.6, 0.3, 0.1], atol=0.005)
    assert pick(indices[:50], 3, (6, 3, 1), 8).tolist() != picks[:50].tolist()
    assert set(pick(indices[:1000], 2, (0.0, 1.0), 1).tolist()) == {1}


def test_weights_are_all_or_nothing_with_a_default_of_one():
    assert weights_of([RequestTemplate("http://h/")] * 2) is None
    assert weights_of([RequestTemplate("http://h/", weight=3), RequestTemplate("http://h/")]) == (
        3.0,
        1.0,
    )
    with pytest.raises(ValueError, match="at least one request needs a weight above 0"):
        weights_of([RequestTemplate("http://h/", weight=0)])


def test_passwords_leave_urls_that_are_written_down():
    assert redact_url("http://u:secret@h:1/p?q") == "http://u:<redacted>@h:1/p?q"
    assert redact_url("http://h/p") == "http://h/p"


# --- the scenario keys ------------------------------------------------------------------------


def test_a_target_with_method_headers_json_and_a_body_file(tmp_path):
    (tmp_path / "body.bin").write_bytes(b"\x00raw")
    target = parse_target(
        {
            "name": "api",
            "url": "http://h/a",
            "method": "post",
            "headers": {"Authorization": "Bearer ${T}", "X-N": 5},
            "json": {"a": [1, 2]},
        },
        "targets[0]",
        env={"T": "tok"},
    )
    (template,) = target.requests
    assert template.method == "POST"
    assert dict(template.headers) == {
        "Authorization": "Bearer tok",
        "X-N": "5",
        "Content-Type": "application/json",
    }
    assert json.loads(template.body) == {"a": [1, 2]}
    from_file = parse_target(
        {"name": "f", "url": "http://h/", "method": "PUT", "body_file": "body.bin"},
        "targets[0]",
        base=tmp_path,
    )
    assert from_file.requests[0].body == b"\x00raw"


def test_request_lists_take_target_defaults_and_override_them():
    target = parse_target(
        {
            "name": "mix",
            "headers": {"X-Team": "a", "X-Over": "target"},
            "requests": [
                {"url": "http://h/a", "weight": 9},
                {
                    "url": "http://h/b",
                    "method": "DELETE",
                    "headers": {"x-over": "request"},
                    "body": "gone",
                },
            ],
        },
        "targets[0]",
    )
    a, b = target.requests
    assert (a.method, a.weight, dict(a.headers)) == ("GET", 9, {"X-Team": "a", "X-Over": "target"})
    assert (b.method, b.weight, b.body) == ("DELETE", None, b"gone")
    assert dict(b.headers) == {"X-Team": "a", "x-over": "request"}
    assert target.urls == ("http://h/a", "http://h/b")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"url": "http://h/", "method": "BREW"}, r"^targets\[0\]\.method: 'BREW' is not one of"),
        ({"url": "http://h/", "headers": ["X: 1"]}, r"^targets\[0\]\.headers: expected a mapping"),
        ({"url": "http://h/", "headers": {"X": None}}, r"^targets\[0\]\.headers\.X: expected text"),
        (
            {"url": "http://h/", "headers": {"X": "${BR_UNSET_FOR_TEST}"}},
            r"^targets\[0\]\.headers\.X: \$\{BR_UNSET_FOR_TEST\} is not set",
        ),
        (
            {"url": "http://h/", "body": "a", "json": {}},
            r"^targets\[0\]\.json: give one of body, json or body_file",
        ),
        (
            {"url": "http://h/", "json": "text"},
            r"^targets\[0\]\.json: expected a mapping or a list",
        ),
        ({"url": "http://h/", "body": {"a": 1}}, r"^targets\[0\]\.body: expected text"),
        (
            {"url": "http://h/", "body_file": "nope"},
            r"^targets\[0\]\.body_file: cannot read 'nope'",
        ),
        (
            {"url": "http://h/", "method": "HEAD", "body": "x"},
            r"^targets\[0\]\.body: a HEAD request has no body",
        ),
        ({"requests": []}, r"^targets\[0\]\.requests: expected a non-empty list"),
        ({"requests": [{"method": "GET"}]}, r"^targets\[0\]\.requests\[0\]\.url: expected text"),
        (
            {"requests": [{"url": "http://h/", "wieght": 1}]},
            r"^targets\[0\]\.requests\[0\]\.wieght: unknown key",
        ),
        (
            {"requests": [{"url": "ftp://h/"}]},
            r"^targets\[0\]\.requests\[0\]\.url: 'ftp://h/' is not an http",
        ),
        (
            {"requests": [{"url": "http://h/", "weight": 0}]},
            r"^targets\[0\]\.requests: weight: at least one request needs a weight above 0",
        ),
        (
            {"url": "http://h/", "requests": [{"url": "http://h/"}]},
            r"^targets\[0\]: give exactly one of kind \(launched\), url, urls, requests or steps",
        ),
        ({"url": "http://h/", "http": 3}, r"^targets\[0\]\.http: '3' is not one of 1\.1, 2, auto"),
        ({"url": "http://h/", "http": True}, r"^targets\[0\]\.http: True is not one of"),
        (
            {"url": "http://h/", "streams": 10},
            r"^targets\[0\]\.streams: streams are HTTP/2's: give http: 2 or auto",
        ),
        ({"url": "http://h/", "http": 2, "streams": 0}, r"^targets\[0\]\.streams: must be"),
    ],
)
def test_bad_request_keys_are_one_line_naming_the_field(target, message):
    with pytest.raises(ValueError, match=message):
        parse_target({"name": "t", **target}, "targets[0]")


def test_launched_targets_take_no_request_keys():
    with pytest.raises(ValueError, match=r"^targets\[0\]\.headers: unknown key"):
        parse_target({"name": "s", "kind": "async", "headers": {"X": "1"}}, "targets[0]")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, ("1.1", 100)),
        ({"http": 1.1}, ("1.1", 100)),  # YAML's number
        ({"http": 2}, ("2", 100)),
        ({"http": "2", "streams": 10}, ("2", 10)),
        ({"http": "auto", "streams": 1}, ("auto", 1)),
    ],
)
def test_a_target_chooses_its_http_and_streams(keys, expected):
    target = parse_target({"name": "t", "url": "http://h/", **keys}, "targets[0]")
    assert (target.http, target.streams) == expected
    steps = {"name": "s", "steps": [{"url": "http://h/"}], **keys}
    assert (parse_target(steps, "targets[0]").http, parse_target(steps, "targets[0]").streams) == (
        expected
    )


def test_an_async_target_may_call_its_dependency_over_http2():
    target = parse_target({"name": "a", "kind": "async", "dependency_http": 2}, "targets[0]")
    assert target.dependency_http == "2"
    assert parse_target({"name": "a", "kind": "async"}, "targets[0]").dependency_http == "1.1"
    with pytest.raises(ValueError, match=r"^targets\[0\]\.dependency_http: 'auto' is not one"):
        parse_target({"name": "a", "kind": "async", "dependency_http": "auto"}, "targets[0]")
    with pytest.raises(ValueError, match=r"^targets\[0\]\.dependency_http: unknown key"):
        parse_target({"name": "b", "kind": "blocking", "dependency_http": 2}, "targets[0]")


def test_launched_targets_take_no_http_key():
    with pytest.raises(ValueError, match=r"^targets\[0\]\.http: unknown key"):
        parse_target({"name": "s", "kind": "async", "http": 2}, "targets[0]")


def test_connections_is_a_load_key():
    base = {"name": "n", "targets": [{"name": "t", "url": "http://h/"}]}
    load = {"rate": 10, "duration": "1s"}
    assert parse_scenario({**base, "load": load}).load.connections == 0
    assert parse_scenario({**base, "load": {**load, "connections": 4}}).load.connections == 4
    with pytest.raises(ValueError, match=r"^load\.connections: must be >= 0"):
        parse_scenario({**base, "load": {**load, "connections": -1}})


def test_secrets_are_redacted_from_the_document_that_is_written_down():
    source = {
        "name": "n",
        "load": {"rate": 1, "duration": "1s"},
        "targets": [
            {"name": "a", "url": "http://u:pw@h/", "headers": {"Authorization": "Bearer x"}},
            {"name": "b", "requests": [{"url": "http://h/", "headers": {"X-Key": "k"}}]},
            {"name": "c", "urls": ["http://u:pw2@h/"]},
        ],
    }
    written = json.dumps(redacted(source))
    for secret in ("Bearer x", '"k"', ":pw@", ":pw2@"):
        assert secret not in written
    assert source["targets"][0]["headers"]["Authorization"] == "Bearer x"  # a copy was changed
    scenario = parse_scenario(source)
    assert "Bearer x" not in json.dumps(scenario.source)


# --- blastradius load URL --------------------------------------------------------------------


def test_flags_become_a_one_target_scenario():
    flags = UrlRun(
        "http://h/x",
        rate=50,
        duration="10s",
        method="POST",
        headers=("X-A: 1", "Authorization: Bearer z"),
        json_text='{"q": 1}',
        insecure=True,
        connections=2,
        generators=1,
    )
    assert document(flags) == {
        "name": "load",
        "load": {
            "rate": 50,
            "timeout": "1s",
            "arrival": "constant",
            "connections": 2,
            "duration": "10s",
        },
        "targets": [
            {
                "name": "load",
                "url": "http://h/x",
                "method": "POST",
                "headers": {"X-A": "1", "Authorization": "Bearer z"},
                "json": {"q": 1},
                "tls": {"verify": False},
            }
        ],
        "generators": 1,
    }
    scenario = url_scenario(flags)
    assert scenario.targets[0].tls.verify is False
    assert scenario.load.connections == 2


def test_http2_flags_become_the_targets_http_and_streams():
    flags = UrlRun("https://h/x", rate=5, duration="1s", http2=True, streams=10)
    assert document(flags)["targets"][0] | {"name": "load"} == {
        "name": "load",
        "url": "https://h/x",
        "method": "GET",
        "http": "2",
        "streams": 10,
    }
    target = url_scenario(flags).targets[0]
    assert (target.http, target.streams) == ("2", 10)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": 0}, r"^--rate: must be > 0"),
        ({"duration": None}, r"^--duration: give a duration or a request count"),
        ({"timeout": "soon"}, r"^--timeout: "),
        ({"method": "BREW"}, r"^--method: 'BREW' is not one of"),
        ({"headers": ("NoColon",)}, r"^--header 'NoColon': expected 'Name: value'"),
        ({"headers": ("X: ${BR_UNSET_FOR_TEST}",)}, r"^--header X: \$\{BR_UNSET_FOR_TEST\}"),
        ({"json_text": "{"}, r"^--json: not valid JSON"),
        ({"body": "a", "body_file": "b"}, r"^--body: give one of --body, --json or --body-file"),
        ({"url": "ftp://h/"}, r"^URL: 'ftp://h/' is not an http"),
        ({"name": "a/b"}, r"^--name: 'a/b' must be letters"),
        ({"ca": "/nonexistent.pem"}, r"^--ca: cannot read"),
        ({"connections": -2}, r"^--connections: must be >= 0"),
        ({"streams": 0, "http2": True}, r"^--streams: must be"),
        ({"streams": 5}, r"^--streams: streams are HTTP/2's"),
    ],
)
def test_bad_flags_are_named_as_flags(changes, message):
    fields = {"url": "http://h/", "rate": 10.0, "duration": "1s", **changes}
    with pytest.raises(ValueError, match=message):
        url_scenario(UrlRun(**fields))


def test_flag_messages_fall_back_to_the_document_path():
    assert flag_message(FieldError("dependency.x", "odd")) == "dependency.x: odd"


def test_a_template_never_shows_its_headers_or_body_in_a_repr():
    template = RequestTemplate("http://h/", "POST", (("Authorization", "Bearer zz9"),), b"pw=zz8")
    assert "zz9" not in repr(template) and "zz8" not in repr(template)
    assert "http://h/" in repr(template)


# --- found by mutation testing (.ci/mutate requests) ------------------------------------------


def _splitmix64(seed: int, index: int) -> float:
    """The reference: splitmix64's output for state (index + 1) * golden + seed, as a
    float in [0, 1) from its top 53 bits; plain Python integers, masked to 64 bits."""
    mask = 2**64 - 1
    x = ((index + 1) * 0x9E3779B97F4A7C15 + seed) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    x ^= x >> 31
    return (x >> 11) / 2**53


@pytest.mark.parametrize("seed", [0, 7, 2**63 + 5, -1])
def test_weighted_picks_are_splitmix64_of_the_seed_and_the_global_index(seed):
    """The same seed picks the same templates in every version and on every worker."""
    indices = np.array([0, 1, 2, 3, 1000, 2**40])
    weights = (1.0, 2.0, 3.0, 4.0)
    cumulative = np.cumsum(weights)
    expected = [
        int(np.searchsorted(cumulative, _splitmix64(seed & (2**64 - 1), int(i)) * 10.0, "right"))
        for i in indices
    ]
    assert pick(indices, 4, weights, seed).tolist() == expected


@pytest.mark.parametrize("seed", [0, 7, 2**63 + 5])
def test_the_uniform_draw_is_splitmix64_to_the_last_bit(seed):
    """Every bit of the draw, not only which template it lands on: a draw that differs
    in its last bits picks another template once weights are fine enough."""
    from blastradius.workers.template import _uniform

    indices = np.array([0, 1, 2, 3, 1000, 2**40, 2**62])
    expected = [_splitmix64(seed, int(i)) for i in indices]
    assert _uniform(indices, seed).tolist() == expected


def test_weights_below_one_in_all_are_weights():
    small = [RequestTemplate("http://h/a", weight=0.25), RequestTemplate("http://h/b", weight=0.5)]
    assert weights_of(small) == (0.25, 0.5)


@pytest.mark.parametrize("character", ["\r", "\n", "\0"])
def test_each_line_breaking_character_is_refused_in_a_header_value(character):
    with pytest.raises(ValueError, match=r"^headers\.X-A: a header value cannot hold a line break"):
        RequestTemplate("http://h/", headers=(("X-A", f"a{character}b"),))


def test_a_template_written_down_has_only_the_keys_it_uses():
    assert RequestTemplate("http://h/").redacted().to_json() == {
        "url": "http://h/",
        "method": "GET",
    }
    full = RequestTemplate(
        "http://u:pw@h/", "POST", (("Authorization", "s"),), b"abc", weight=2.0
    ).redacted()
    assert full.to_json() == {
        "url": "http://u:<redacted>@h/",
        "method": "POST",
        "headers": {"Authorization": "<redacted>"},
        "body_bytes": 3,
        "weight": 2.0,
    }


def test_configuration_records_cannot_be_changed_once_built():
    import dataclasses

    from blastradius.cluster.request_keys import Files
    from blastradius.workers.template import Tls

    for record, field in (
        (RequestTemplate("http://h/"), "url"),
        (Tls(), "verify"),
        (Files(), "base"),
        (UrlRun("http://h/", 1.0), "rate"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, None)


def test_a_json_body_is_sent_as_utf_8_not_escaped():
    target = parse_target({"name": "t", "url": "http://h/", "json": {"name": "é"}}, "targets[0]")
    assert target.requests[0].body == '{"name":"é"}'.encode()


def test_a_negative_weight_names_the_weight_not_the_url():
    document = {"name": "t", "requests": [{"url": "http://h/", "weight": -1}]}
    with pytest.raises(ValueError, match=r"^targets\[0\]\.requests\[0\]\.weight: must be"):
        parse_target(document, "targets[0]")


def test_an_empty_list_of_urls_is_refused():
    with pytest.raises(ValueError, match=r"^targets\[0\]\.urls: expected a non-empty list"):
        parse_target({"name": "t", "urls": []}, "targets[0]")


def test_a_malformed_target_does_not_stop_the_next_ones_secrets_being_redacted():
    document = {
        "targets": [
            "not a mapping",
            {"name": "t", "url": "http://u:pw@h/", "headers": {"Authorization": "secret"}},
        ]
    }
    written = json.dumps(redacted(document))
    assert "secret" not in written and "pw" not in written


def test_load_flags_left_at_their_defaults_ask_for_nothing_more():
    assert document(UrlRun("http://h/", 5.0, duration="2s")) == {
        "name": "load",
        "load": {
            "rate": 5.0,
            "timeout": "1s",
            "arrival": "constant",
            "connections": 0,
            "duration": "2s",
        },
        "targets": [{"name": "load", "url": "http://h/", "method": "GET"}],
    }
