"""A cosmic-ray filter: marks SKIPPED the mutants no test should be asked to kill.

- Mutants inside type annotations. Every module here has ``from __future__ import
  annotations``, so an annotation is never evaluated: ``int | None`` mutated to
  ``int - None`` is the same program.
- Where the config's ``[blastradius-focus]`` table names functions for a module
  (``"workers/client.py" = ["_connect_failure", "_Connection.connection_lost"]``),
  mutants of that module outside them: the focus is the decision the tests are for,
  not the module's plumbing.

    python .ci/mutation_filter.py CONFIG SESSION      (after cosmic-ray init)
"""

from __future__ import annotations

import ast
import sys
import tomllib
from functools import cache
from pathlib import Path

from cosmic_ray.tools.filters.filter_app import FilterApp
from cosmic_ray.work_item import WorkerOutcome, WorkResult

Position = tuple[int, int]  # row 1-based, column 0-based, as cosmic-ray records them
Span = tuple[Position, Position]


def _span(node: ast.AST) -> Span:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@cache
def annotation_spans(path: Path) -> list[Span]:
    """Where the module's annotations are, if they are never evaluated."""
    tree = _tree(path)
    if not any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    ):
        return []  # annotations are evaluated here: mutate them like any code
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.arg) and node.annotation is not None:
            spans.append(_span(node.annotation))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            spans.append(_span(node.returns))
    return spans


def definition_spans(path: Path, names: tuple[str, ...]) -> list[Span]:
    """Where the named functions (``f`` or ``Class.method``) are; a name not found is an
    error, so a rename cannot quietly empty the focus."""
    found: dict[str, Span] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + node.name
                if not isinstance(node, ast.ClassDef):
                    found[name] = _span(node)
                visit(node.body, name + ".")

    visit(_tree(path).body, "")
    missing = sorted(set(names) - set(found))
    if missing:
        raise SystemExit(f"blastradius-focus: {path}: no {', '.join(missing)}")
    return [found[name] for name in names]


class SkipUnasked(FilterApp):
    """Marks mutants in annotations, or outside a module's focus, SKIPPED."""

    def description(self) -> str:
        return __doc__

    def add_args(self, parser) -> None:
        parser.add_argument("--config", required=True, help="the cosmic-ray config (TOML)")

    def filter(self, work_db, args) -> None:
        focus = tomllib.loads(Path(args.config).read_text()).get("blastradius-focus", {})
        counts = {"in an annotation": 0, "outside the focus": 0}
        for item in work_db.work_items:
            for mutation in item.mutations:
                path = Path(mutation.module_path)
                start = tuple(mutation.start_pos)
                reason = None
                if any(low <= start < high for low, high in annotation_spans(path)):
                    reason = "in an annotation"
                elif path.as_posix() in focus:
                    spans = definition_spans(path, tuple(focus[path.as_posix()]))
                    if not any(low <= start < high for low, high in spans):
                        reason = "outside the focus"
                if reason:
                    work_db.set_result(
                        item.job_id,
                        WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=reason),
                    )
                    counts[reason] += 1
        print("skipped: " + ", ".join(f"{n} {reason}" for reason, n in counts.items()))


if __name__ == "__main__":
    sys.exit(SkipUnasked().main())
