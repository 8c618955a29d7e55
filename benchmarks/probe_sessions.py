"""One generator running 3-step sessions in this process; prints one JSON line.

Run by ``session_rate.py`` (pinned to one core): each session logs in (a POST whose
JSON answer holds a token, captured), lists the items with the token (an id
captured), and pays for that item with the token, open loop at ``--rate`` sessions a
second; every step recorded and written to Parquet shards, as in a run. Figures are
from the rows: sessions, steps, ok steps, step send-lag p99 (nearest rank), and the
CPU time this process used once the load began.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
from probe_generator import send_lag_p99_ms, shard_sink

from blastradius.workers.generator import Share, run_share
from blastradius.workers.journey import Capture, Journey, Step, compile_text
from blastradius.workers.schedule import Schedule

S = 1_000_000_000


def journey(base: str) -> Journey:
    """Log in, list, pay: each step needs what the one before it answered."""
    known: set[str] = set()

    def text(value: str):
        return compile_text(value, known, {})

    login = Step(
        "login",
        text(f"{base}/login"),
        "POST",
        (("Content-Type", text("application/json")),),
        text('{"user":"bench"}'),
        captures=(Capture("token", "json", "$.token"),),
    )
    known.add("token")
    auth = (("Authorization", text("Bearer ${token}")),)
    items = Step(
        "items",
        text(f"{base}/items"),
        headers=auth,
        captures=(Capture("item", "json", "$.items[0].id"),),
    )
    known.add("item")
    pay = Step("pay", text(f"{base}/pay/${{item}}"), "POST", auth)
    return Journey((login, items, pay))


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="sessions per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    out, directory, sink = shard_sink()

    schedule = Schedule.constant_rate(args.rate, duration_ns=int(args.seconds * S))
    share = Share(
        "bench",
        (),
        schedule,
        timeout_ns=1 * S,
        connections=args.connections,
        journey=journey(args.url.rstrip("/")),
    )
    before = cpu_s()
    run_share(share, sink)
    used = cpu_s() - before
    rows = pq.read_table(directory, columns=["intended_ns", "sent_ns", "ok", "session"])
    shutil.rmtree(out, ignore_errors=True)
    sessions = schedule.expected_requests()
    print(
        json.dumps(
            {
                "rate": args.rate,
                "seconds": args.seconds,
                "sessions": sessions,
                "planned": 3 * sessions,
                "rows": rows.num_rows,
                "ok": int(pc.sum(rows["ok"]).as_py() or 0),
                "send_lag_p99_ms": send_lag_p99_ms(rows),
                "cpu_s": used,
            }
        )
    )


if __name__ == "__main__":
    main()
