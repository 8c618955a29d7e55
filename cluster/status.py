"""A run's status, and its exit code, as they follow from how its generators ended.

Pure: the driver records each generator's end and asks here what the run is.
"""

from __future__ import annotations

from collections.abc import Iterable

from blastradius.workers.messages import BATCH_INTERVAL_NS
from blastradius.workers.run_record import GeneratorState, RunStatus

EXIT_CODES = {
    RunStatus.COMPLETED: 0,
    RunStatus.PARTIAL: 1,
    RunStatus.FAILED: 1,
    RunStatus.INTERRUPTED: 130,  # as a shell reports a command stopped by SIGINT
}

# The run completed, and its rows are intact, but an objective (``slo:``) was not met.
OBJECTIVES_NOT_MET = 3

# The rows a generator sent up to one hand-over before it was seen gone may be
# missing too.
HANDOVER_NS = BATCH_INTERVAL_NS


def target_status(states: Iterable[GeneratorState]) -> RunStatus:
    """A target's status from its generators' end states: ``failed`` if one failed (the
    run stops there), ``partial`` if one was lost, else ``completed``."""
    ended = set(states)
    if GeneratorState.FAILED in ended:
        return RunStatus.FAILED
    if GeneratorState.LOST in ended:
        return RunStatus.PARTIAL
    return RunStatus.COMPLETED


def missing_window(start_ns: int, gone_ns: int, end_ns: int | None) -> tuple[int, int | None]:
    """The part of a lost or failed generator's share of the schedule whose rows may be
    missing: from its last hand-over before it was seen gone at ``gone_ns`` (never
    before the start) to the planned end (``None``: no planned end)."""
    return max(start_ns, gone_ns - HANDOVER_NS), end_ns


def exit_code(status: RunStatus, objectives_met: bool = True) -> int:
    """The CLI's exit code for a run that ended with ``status``: a run that completed
    but missed an objective is 3; one that did not complete says so first."""
    code = EXIT_CODES[status]
    return OBJECTIVES_NOT_MET if code == 0 and not objectives_met else code
