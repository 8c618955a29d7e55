"""A run's status and exit code from its generators' ends (pure; the chaos tests show the
same on real runs)."""

import pytest

from blastradius.cluster.status import (
    HANDOVER_NS,
    GeneratorState,
    RunStatus,
    exit_code,
    missing_window,
    target_status,
)

S = 1_000_000_000
C, ST, L, F = (
    GeneratorState.COMPLETED,
    GeneratorState.STOPPED,
    GeneratorState.LOST,
    GeneratorState.FAILED,
)


@pytest.mark.parametrize(
    ("states", "status"),
    [
        ([C], RunStatus.COMPLETED),
        ([C, C, C], RunStatus.COMPLETED),
        ([C, ST], RunStatus.COMPLETED),  # stopped by a signal: the run says interrupted
        ([C, L], RunStatus.PARTIAL),
        ([L, L], RunStatus.PARTIAL),
        ([C, F], RunStatus.FAILED),
        ([L, F], RunStatus.FAILED),  # a failure outweighs a loss
        ([F, L, C], RunStatus.FAILED),
    ],
)
def test_a_target_is_as_complete_as_its_worst_generator(states, status):
    assert target_status(states) == status
    assert target_status(iter(states)) == status


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (RunStatus.COMPLETED, 0),
        (RunStatus.PARTIAL, 1),
        (RunStatus.FAILED, 1),
        (RunStatus.INTERRUPTED, 130),
    ],
)
def test_exit_codes(status, code):
    assert exit_code(status) == code
    # A missed objective makes a completed run 3; a run that did not complete says so first.
    assert exit_code(status, objectives_met=False) == (3 if code == 0 else code)


def test_the_missing_window_reaches_back_one_batch_interval():
    from blastradius.workers.generator import Share

    assert HANDOVER_NS == Share.__dataclass_fields__["batch_interval_ns"].default == S


def test_a_running_run_has_no_exit_code():
    with pytest.raises(KeyError):
        exit_code(RunStatus.RUNNING)


@pytest.mark.parametrize(
    ("start", "gone", "end", "window"),
    [
        # Gone 5 s in: its last batch may be a hand-over old, up to the planned end.
        (0, 5 * HANDOVER_NS, 60 * HANDOVER_NS, (4 * HANDOVER_NS, 60 * HANDOVER_NS)),
        # Gone in its first hand-over: all of it from the start.
        (10, 10 + HANDOVER_NS // 2, 100 * HANDOVER_NS, (10, 100 * HANDOVER_NS)),
        (10, 10 + HANDOVER_NS, 100 * HANDOVER_NS, (10, 100 * HANDOVER_NS)),
        # A count-only run has no planned end.
        (0, 3 * HANDOVER_NS, None, (2 * HANDOVER_NS, None)),
    ],
)
def test_a_lost_generators_missing_window(start, gone, end, window):
    assert missing_window(start, gone, end) == window
    low, high = missing_window(start, gone, end)
    assert low < gone and (high is None or low < high)
