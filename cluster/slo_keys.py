"""The ``slo:`` keys of a scenario (and of a target, over the scenario's), and the
objectives file of ``blastradius check --slo``, into ``analysis.slo.Objectives``.

    slo:
      availability: 0.999      # at least (a share of the requests)
      goodput_rps: 90          # at least
      p99: 300ms               # at most: p50 p90 p99 p999 p9999 max service_p99
      errors: {timeout: 0.01}  # at most, a share of the requests, by error kind
      session_availability: 0.99   # a session target's: at least (completed sessions)
      session_p99: 5s          # at most: a completed journey, from its arrival
      window: 10s              # availability and percentiles hold in every window too
      abort: true              # stop the load once an objective can no longer be met
"""

from __future__ import annotations

from collections.abc import Mapping

from blastradius.targets.fields import Fields, kind_of, number, read_duration
from blastradius.targets.validation import FieldError
from blastradius.workers.record import ERROR_KINDS
from blastradius.workers.run_record import ERROR_PREFIX, LATENCY, SESSION, Objectives

SLO_KEYS = ("availability", "goodput_rps", *LATENCY, *SESSION, "errors", "window", "abort")


def _share(value: object, path: str) -> float:
    share = number(value, path, strict=False)
    if share > 1:
        raise FieldError(path, f"a share, from 0 to 1 (got {value!r})")
    return share


def parse_objectives(value: object, path: str, over: bool = False) -> Objectives:
    """One ``slo:`` mapping; every key known, every threshold checked. One ``over`` a
    scenario's (a target's) may hold only a window or ``abort``."""
    fields = Fields(value, path)
    thresholds: list[tuple[str, float]] = []
    if fields.get("availability") is not None:
        thresholds.append(
            ("availability", _share(fields.get("availability"), fields.at("availability")))
        )
    if fields.get("goodput_rps") is not None:
        rate = number(fields.get("goodput_rps"), fields.at("goodput_rps"), strict=False)
        thresholds.append(("goodput_rps", rate))
    for name in LATENCY:
        if fields.get(name) is not None:
            thresholds.append((name, read_duration(fields.get(name), fields.at(name)) / 1e6))
    if fields.get("session_availability") is not None:
        share = _share(fields.get("session_availability"), fields.at("session_availability"))
        thresholds.append(("session_availability", share))
    if fields.get("session_p99") is not None:
        duration = read_duration(fields.get("session_p99"), fields.at("session_p99"))
        thresholds.append(("session_p99", duration / 1e6))
    errors = fields.get("errors")
    if errors is not None:
        kinds = Fields(errors, fields.at("errors"))
        for kind, share in kinds.value.items():
            if kind not in ERROR_KINDS[1:]:
                known = ", ".join(ERROR_KINDS[1:])
                raise FieldError(kinds.at(str(kind)), f"not an error kind (one of {known})")
            thresholds.append((ERROR_PREFIX + kind, _share(share, kinds.at(kind))))
    window = fields.get("window")
    window_ns = None if window is None else read_duration(window, fields.at("window"))
    abort = fields.get("abort")
    if abort is not None and not isinstance(abort, bool):
        raise FieldError(fields.at("abort"), f"expected true or false, got {kind_of(abort)}")
    fields.done()
    if not thresholds and not over:
        given = ", ".join(SLO_KEYS[:-2])
        raise FieldError(path or "objectives", f"no objective (give one of {given})")
    return Objectives(tuple(thresholds), window_ns, abort)


def parse_objectives_file(
    document: object,
) -> tuple[Objectives | None, dict[str, Objectives]]:
    """An objectives file: the ``slo:`` keys for every target, and ``targets:`` mapping a
    target's name to its own, over them. Either part may be missing, not both."""
    if not isinstance(document, Mapping):
        raise ValueError(f"expected a mapping of objectives, got {kind_of(document)}")
    fields = Fields(document, "")
    targets = fields.get("targets")
    if targets is not None and not isinstance(targets, Mapping):
        raise FieldError("targets", "expected a mapping of target name to objectives")
    common = {k: v for k, v in fields.value.items() if k != "targets"}
    base = parse_objectives(common, "") if common else None
    own = {
        str(name): parse_objectives(value, f"targets.{name}", over=base is not None)
        for name, value in (targets or {}).items()
    }
    if base is None and not own:
        raise ValueError("no objectives (give the keys of slo:, or targets: {NAME: {...}})")
    return base, own
