"""How a request failed: the closed set of error kinds (DESIGN.md), defined once.

Light on purpose (no numpy, no pyarrow): the row schema (``record.py``), run.json's
objectives (``run_record.py``) and the CLI all name kinds.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """How a request failed (DESIGN.md); a row's ``error``. Its code in the buffers is
    its place here, so a new kind goes last."""

    OK = ""
    TIMEOUT = "timeout"
    CONNECT = "connect"
    RESET = "reset"
    HTTP = "http"
    DROPPED = "dropped"
    OTHER = "other"
    TLS = "tls"
    CHECK = "check"  # a session's step: an expectation failed, or a capture found nothing
    SKIPPED = "skipped"  # a session's step never sent: an earlier one failed, or time ran out


ERROR_KINDS = tuple(kind.value for kind in ErrorKind)  # a kind's code is its place here
