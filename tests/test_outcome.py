"""The one place a request's ending becomes its error kind: every row of the table."""

import pytest

from blastradius.workers.outcome import Ending, classify
from blastradius.workers.record import ERROR_KINDS


@pytest.mark.parametrize(
    ("ending", "status", "late", "kind"),
    [
        (Ending.RESPONSE, 200, False, ""),
        (Ending.RESPONSE, 204, False, ""),
        (Ending.RESPONSE, 299, False, ""),
        (Ending.RESPONSE, 200, True, "timeout"),  # answered after the deadline
        (Ending.RESPONSE, 300, False, "http"),  # the first status past 2xx
        (Ending.RESPONSE, 302, False, "http"),  # redirects are not followed
        (Ending.RESPONSE, 304, False, "http"),
        (Ending.RESPONSE, 404, False, "http"),
        (Ending.RESPONSE, 500, True, "http"),  # a late error is still an error of its kind
        (Ending.RESPONSE, 199, False, "http"),
        (Ending.DEADLINE, 0, True, "timeout"),
        (Ending.REFUSED, 0, False, "connect"),
        (Ending.TLS_FAILED, 0, False, "tls"),
        (Ending.BROKEN, 0, False, "reset"),
        (Ending.NOT_HTTP, 0, False, "other"),
        (Ending.NOT_HTTP, 101, False, "other"),
        (Ending.ABANDONED, 0, False, "other"),
        (Ending.NOT_SENT, 0, True, "dropped"),
        (Ending.SKIPPED, 0, False, "skipped"),
        (Ending.UNSENDABLE, 0, False, "check"),
        (Ending.FLOW_RAISED, 0, False, "check"),
    ],
)
def test_every_ending_has_one_kind(ending, status, late, kind):
    assert ERROR_KINDS[classify(ending, status, late)] == kind


def test_every_kind_but_http_and_ok_comes_from_a_failure_ending():
    kinds = {ERROR_KINDS[classify(e, 0, False)] for e in Ending if e != Ending.RESPONSE}
    assert kinds | {"", "http"} == set(ERROR_KINDS)


@pytest.mark.parametrize(
    ("status", "late", "status_ok", "check_failed", "kind"),
    [
        # A session's step says which statuses it expects: a 404 may be what it wants.
        (404, False, True, False, ""),
        (200, False, False, False, "http"),
        (200, False, None, False, ""),  # none said: 2xx
        (404, False, None, False, "http"),
        # A failed check is its own kind, after the status and the deadline.
        (200, False, True, True, "check"),
        (200, False, None, True, "check"),
        (500, False, None, True, "http"),
        (404, False, False, True, "http"),
        (200, True, True, True, "timeout"),
        (200, True, True, False, "timeout"),
    ],
)
def test_a_steps_expectations_decide_its_kind(status, late, status_ok, check_failed, kind):
    assert ERROR_KINDS[classify(Ending.RESPONSE, status, late, status_ok, check_failed)] == kind
    # Only a response is checked: a failure ending is its own kind whatever was expected.
    assert ERROR_KINDS[classify(Ending.BROKEN, status, late, status_ok, check_failed)] == "reset"


def test_no_two_endings_share_a_value():
    # An IntEnum member with an earlier member's value silently becomes its alias.
    assert len({e.value for e in Ending.__members__.values()}) == len(Ending.__members__)
