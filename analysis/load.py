"""Reading runs: Parquet shards and ``run.json`` into a DataFrame, nothing of Ray.

``load(path)`` takes a run directory (``run.json`` + ``requests/``), a
directory of runs, or a pyarrow filesystem URI of either. Shards are read one
by one: a truncated or foreign file is reported by name in ``skipped`` and
left out, never a crash. Files whose names start with ``_`` or ``.`` (shards
being written) are ignored. ``load`` can take only some columns, targets and a window
of intended time; ``dataset(path)`` is the same rows as a pyarrow Dataset, read only
when scanned, for runs too big to load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from blastradius.workers import layout
from blastradius.workers.record import ADDED, SCHEMA
from blastradius.workers.run_record import RunRecord

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.dataset as ds


@dataclass
class Runs:
    """Rows of one or more runs, their manifests, and the files that could not be read."""

    loaded: pd.DataFrame | None  # None: opened to be read in batches (``analysis.scan``)
    manifests: dict[str, RunRecord] = field(default_factory=dict)  # run id -> run.json
    skipped: list[str] = field(default_factory=list)  # "path: reason"

    @property
    def rows(self) -> pd.DataFrame:
        """The rows (none for runs ``scan.open_runs`` opened: pandas is imported only
        where rows are)."""
        if self.loaded is None:
            import pandas as pd

            return pd.DataFrame()
        return self.loaded

    @property
    def manifest(self) -> RunRecord:
        """The manifest of a single run (the first, when there are several)."""
        return next(iter(self.manifests.values()), RunRecord(""))


def check_shard(schema: pa.Schema) -> None:
    """``ValueError`` unless ``schema`` is a shard's of a version this reads."""
    layout.check_schema_version(schema.metadata)
    missing = [n for n in SCHEMA.names if n not in schema.names and n not in ADDED]
    if missing:
        raise ValueError(f"not a blastradius shard (no {missing[0]} column)")


def skipped_entry(shard: Shard, exc: Exception) -> str:
    """How a shard that cannot be read is named in ``Runs.skipped``: ``path: reason``."""
    return f"{shard.path}: {str(exc).splitlines()[0][:160]}"


def has_column(shard: Shard, name: str) -> bool:
    """Whether ``shard`` has the column ``name`` (one added by a later schema version is
    missing from an earlier shard: none of its rows has it)."""
    with shard.filesystem.open_input_file(shard.path) as source:
        return name in pq.ParquetFile(source).schema_arrow.names


def _read_shard(
    filesystem: pafs.FileSystem,
    path: str,
    columns: list[str] | None = None,
    window: pc.Expression | None = None,
) -> pa.Table:
    with filesystem.open_input_file(path) as source:
        parquet = pq.ParquetFile(source)
        check_shard(parquet.schema_arrow)
    wanted = columns or SCHEMA.names
    present = parquet.schema_arrow.names
    read = [name for name in wanted if name in present]
    table = pq.read_table(path, filesystem=filesystem, columns=read, filters=window)
    for name in wanted:  # a column added since the shard's version: null in it
        if name not in present:
            field = SCHEMA.field(name)
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(wanted)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Rows as pandas: categories for strings, exact nullable Int64 for times that may be null."""
    import pandas as pd

    mapping = {pa.int64(): pd.Int64Dtype()}
    frame = table.to_pandas(types_mapper=mapping.get)
    for name in ("target", "node", "error", "run"):
        if name in frame:
            frame[name] = frame[name].astype("category")
    for name in ("intended_ns", "seq", "bytes_in"):  # never null: plain int64
        if name in frame:
            frame[name] = frame[name].astype("int64")
    return frame


@dataclass(frozen=True)
class Shard:
    """One published shard of a run: where it is, and whose rows it holds."""

    filesystem: pafs.FileSystem
    path: str
    run: str
    target: str


def locate(path: str) -> tuple[dict[str, RunRecord], list[Shard]]:
    """The manifests (run id -> run.json) and the published shards of a run directory, a
    directory of runs, or a filesystem URI of either; no row is read."""
    shown = str(path) if str(path).isprintable() else repr(str(path))  # messages: one line
    try:
        filesystem, root = layout.resolve(str(path).rstrip("/"))
        runs = layout.run_dirs(filesystem, root)
    except (OSError, ValueError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(f"{shown}: cannot read it: {first[:200]}") from None
    if not runs:
        raise FileNotFoundError(f"{shown}: no run.json here or in the directories below")
    manifests, shards = {}, []
    for run_dir in runs:
        location = f"{run_dir}/{layout.MANIFEST}"
        with filesystem.open_input_stream(location) as stream:
            try:
                manifest = RunRecord.from_json(
                    json.loads(stream.read()), run_dir.rsplit("/", 1)[-1]
                )
            except ValueError as exc:
                raise FileNotFoundError(f"{location}: {exc}") from None
        manifests[manifest.run_id] = manifest
        shards += [
            Shard(filesystem, shard, manifest.run_id, target)
            for target, shard in layout.shards(filesystem, run_dir)
        ]
    return manifests, shards


def load(
    path: str,
    columns: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Runs:
    """Read a run directory, a directory of runs, or a filesystem URI of either.

    ``columns``: only these of the shard's columns (``target`` and ``run`` are always
    added); ``targets``: only these targets' shards are read; ``start_ns``/``end_ns``:
    only rows whose ``intended_ns`` is in ``[start_ns, end_ns)`` (a shard whose
    statistics lie outside is not read). For a run too big to load, ``dataset(path)``.
    """
    names = _columns(columns)
    manifests, shards = locate(path)
    if targets is not None:
        wanted = set(targets)
        shards = [shard for shard in shards if shard.target in wanted]
    window = _window_filter(start_ns, end_ns)
    tables, skipped = [], []
    for shard in shards:
        try:
            table = _read_shard(shard.filesystem, shard.path, names, window)
        except (OSError, ValueError, pa.ArrowException) as exc:
            skipped.append(skipped_entry(shard, exc))
            continue
        n = table.num_rows
        table = table.append_column("target", pa.array([shard.target] * n, pa.string()))
        tables.append(table.append_column("run", pa.array([shard.run] * n, pa.string())))
    schema = _rows_schema(names)
    unified = [t.cast(schema) for t in tables]
    table = pa.concat_tables(unified) if unified else schema.empty_table()
    return Runs(to_frame(table), manifests, skipped)


def _rows_schema(names: Sequence[str]) -> pa.Schema:
    """The loaded rows' schema: those shard columns (without the shard metadata), then
    ``target`` and ``run``."""
    fields = [SCHEMA.field(name) for name in names]
    return pa.schema([*fields, pa.field("target", pa.string()), pa.field("run", pa.string())])


def _columns(columns: Sequence[str] | None) -> list[str]:
    """The shard columns asked for, in the schema's order; ``ValueError`` names one
    that is not a shard's column."""
    if columns is None:
        return list(SCHEMA.names)
    unknown = [name for name in columns if name not in SCHEMA.names]
    if unknown:
        raise ValueError(
            f"columns: {unknown[0]!r} is not a shard column ({', '.join(SCHEMA.names)})"
        )
    return [name for name in SCHEMA.names if name in set(columns)]


def _window_filter(start_ns: int | None, end_ns: int | None) -> pc.Expression | None:
    """Rows whose intended time is in ``[start_ns, end_ns)``, as a filter (None: all)."""
    window = None
    if start_ns is not None:
        window = pc.field("intended_ns") >= start_ns
    if end_ns is not None:
        before = pc.field("intended_ns") < end_ns
        window = before if window is None else window & before
    return window


def dataset(path: str) -> ds.Dataset:
    """The readable shards of a run, a directory of runs, or a URI of either, as a
    pyarrow Dataset, read only when scanned (``to_batches``, ``to_table`` with
    ``columns`` and a ``filter``, or DuckDB and Polars over it): every shard column,
    plus ``target`` and ``run``. For runs too big to load; shards that cannot be read
    are left out, as ``load`` leaves them (``scan.readable`` names them)."""
    import pyarrow.dataset as ds  # it imports pandas: only where a dataset is asked for

    from blastradius.analysis.scan import readable  # scan imports this module

    _, shards = locate(path)
    good, _ = readable(shards)
    schema = _rows_schema(SCHEMA.names)
    if not good:
        return ds.dataset([], schema=schema)
    return ds.FileSystemDataset.from_paths(  # one locate: one filesystem
        [shard.path for shard in good],
        schema=schema,
        format=ds.ParquetFileFormat(),
        filesystem=good[0].filesystem,
        partitions=[(pc.field("target") == s.target) & (pc.field("run") == s.run) for s in good],
    )
