"""A mutation session's score and its surviving mutants, each with its source line.

    python .ci/mutation_survivors.py SESSION        (from the clone the session ran in)

The score is killed / (killed + survived): skipped mutants (see mutation_filter.py) and
pending ones are not in it; a mutant that timed out counts as killed, as cosmic-ray has it.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome


def main(session: str) -> None:
    counts: Counter[str] = Counter()
    survivors = []
    with use_db(session, WorkDB.Mode.open) as db:
        pending = db.num_work_items - db.num_results
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                counts["skipped"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                survivors.extend(item.mutations)
            else:
                counts["killed"] += 1
    for mutation in sorted(survivors, key=lambda m: (str(m.module_path), m.start_pos)):
        row, col = mutation.start_pos
        line = Path(mutation.module_path).read_text().splitlines()[row - 1].strip()
        operator = mutation.operator_name.split("/")[-1]
        print(f"{mutation.module_path}:{row}:{col} {operator} ({mutation.occurrence}) | {line}")
    tried = counts["killed"] + counts["survived"]
    score = f"{100 * counts['killed'] / tried:.1f}%" if tried else "-"
    print(
        f"killed {counts['killed']} of {tried} ({score}); survived {counts['survived']}, "
        f"skipped {counts['skipped']}, pending {pending}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
