"""How a request ended, and the one place that turns that into its error kind.

The client tells how each request ended on the wire (an ``Ending``); the
generator tells of the requests it never sent. ``classify`` maps the ending,
the HTTP status and whether the end came after the request's deadline onto
the closed set of error kinds of DESIGN.md, and a row is ok exactly when its
kind is ``""``. A session's step says which statuses it expects (2xx unless
it says otherwise) and whether its other expectations and captures held::

    ending       status      after the deadline   kind
    RESPONSE     expected    no                   ""        ok
    RESPONSE     expected    yes                  timeout   (status kept)
    RESPONSE     other       either               http
    RESPONSE     expected    no, a check failed   check     (a session's step)
    DEADLINE     -           -                    timeout   no complete response in time
    REFUSED      -           -                    connect   no connection
    TLS_FAILED   -           -                    tls       TCP connected, no TLS session
    BROKEN       -           -                    reset     closed or reset before complete
    NOT_HTTP     -           -                    other     not HTTP, or a 101 switch
    ABANDONED    -           -                    other     the client closed first
    NOT_SENT     -           -                    dropped   its deadline passed in line
    SKIPPED      -           -                    skipped   its session ended before it
    UNSENDABLE   -           -                    check     a captured value broke it
    FLOW_RAISED  -           -                    check     a python flow raised
"""

from __future__ import annotations

from enum import IntEnum

from blastradius.workers.kinds import ErrorKind
from blastradius.workers.record import ERROR_CODE

TIMEOUT = ERROR_CODE[ErrorKind.TIMEOUT]
CONNECT = ERROR_CODE[ErrorKind.CONNECT]
TLS = ERROR_CODE[ErrorKind.TLS]
RESET = ERROR_CODE[ErrorKind.RESET]
HTTP = ERROR_CODE[ErrorKind.HTTP]
DROPPED = ERROR_CODE[ErrorKind.DROPPED]
OTHER = ERROR_CODE[ErrorKind.OTHER]
CHECK = ERROR_CODE[ErrorKind.CHECK]
SKIPPED = ERROR_CODE[ErrorKind.SKIPPED]


class Ending(IntEnum):
    """How a request ended, as its sender saw it."""

    RESPONSE = 0  # a complete response (any status)
    DEADLINE = 1  # no complete response by the deadline
    REFUSED = 2  # no connection: refused, unreachable, unknown host
    TLS_FAILED = 3  # a TCP connection, but no TLS session
    BROKEN = 4  # the connection broke before the response was complete
    NOT_HTTP = 5  # the peer did not speak HTTP/1.1 (or switched away from it)
    ABANDONED = 6  # the client closed with the request unfinished
    NOT_SENT = 7  # never sent: its deadline passed while it waited for a slot
    SKIPPED = 8  # never sent: a session's step whose session ended before it
    UNSENDABLE = 9  # never sent: a session's values make the step's request unsendable
    FLOW_RAISED = 10  # a session written in Python raised: a row that says so


_KIND_OF_FAILURE = {
    Ending.DEADLINE: TIMEOUT,
    Ending.REFUSED: CONNECT,
    Ending.TLS_FAILED: TLS,
    Ending.BROKEN: RESET,
    Ending.NOT_HTTP: OTHER,
    Ending.ABANDONED: OTHER,
    Ending.NOT_SENT: DROPPED,
    Ending.SKIPPED: SKIPPED,
    Ending.UNSENDABLE: CHECK,
    Ending.FLOW_RAISED: CHECK,
}


def classify(
    ending: Ending,
    status: int,
    late: bool,
    status_ok: bool | None = None,
    check_failed: bool = False,
) -> int:
    """The error code (``workers.record.ERROR_KINDS``) of a request; 0 means ok.

    ``status_ok``: whether a session's step expected ``status`` (None: a 2xx is
    expected); ``check_failed``: whether its other expectations or captures failed."""
    if ending != Ending.RESPONSE:
        return _KIND_OF_FAILURE[ending]
    if not (200 <= status < 300 if status_ok is None else status_ok):
        return HTTP
    if late:
        return TIMEOUT
    return CHECK if check_failed else 0
