"""A keyed table kept as a directory of immutable Parquet parts, so recording costs the same at any size and a
reader never opens a file that is being written.

<table>.parquet/part-<hi>-<lo>-<rows>.parquet   rows appended with sequence numbers lo..hi (one append: lo == hi)

pyarrow, pandas and DuckDB read the directory as one table. An append writes one new part (a hidden temporary
file renamed into place) under a short lock that orders the sequence numbers; a row whose key was recorded
before supersedes the older row (the part with the higher sequence number wins). Parts merge in runs of
MERGE_RUN of one size class, as an LSM tree does, so a study of N trials holds O(log N) parts and each row is
rewritten O(log N) times; a merged part covers its inputs' range, and a reader that still sees the inputs
ignores them. A plain Parquet file at the table's path (written before parts existed) reads as part 0 and turns
into a directory at the next append.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydc.files.atomic import atomic_path, exclusive, try_exclusive

MERGE_RUN = 16  # parts of one size class merged at once: 16 bounds the parts per class and rows' rewrites
_PART = re.compile(r"part-(\d{12})-(\d{12})-(\d+)\.parquet")
_READ_TRIES = 20  # a compaction may delete a part between listing and opening it: list again


class Part(NamedTuple):
    hi: int
    lo: int
    rows: int
    path: Path

    @property
    def size_class(self) -> int:
        return int(math.log(max(self.rows, 1), MERGE_RUN))


def _part_name(hi: int, lo: int, rows: int) -> str:
    return f"part-{hi:012d}-{lo:012d}-{rows}.parquet"


def read_file(path: Path) -> pa.Table:
    with open(path, "rb") as handle:  # one open: a later unlink or rename cannot change what is read
        return pq.read_table(handle)


def latest_rows(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """The last row of every key, in the order of those last rows."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by(list(key), use_threads=False).aggregate([("__row", "max")]).column("__row_max")
    return table.take(last.take(pc.sort_indices(last)))


class PartTable:
    """One table of a results directory: `append` a batch of rows, `read` the latest row of every key."""

    def __init__(self, path: Path, schema: pa.Schema, key: tuple[str, ...], conform: Callable[[pa.Table], pa.Table],
                 lock: Path):
        self.path, self.schema, self.key, self.conform, self.lock = path, schema, key, conform, lock
        self._legacy = path.with_name(f".{path.name}.legacy")

    # --- writing -------------------------------------------------------------------------------------------------

    def append(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = latest_rows(table, self.key)
        with exclusive(self.lock):  # orders sequence numbers; held for one small write, whatever the table's size
            self._migrate_legacy_file()
            seq = max((p.hi for p in self._parts()), default=0) + 1
            self._write(table, seq, seq)
        self.compact()

    def _write(self, table: pa.Table, hi: int, lo: int) -> None:
        with atomic_path(self.path / _part_name(hi, lo, table.num_rows)) as temp:  # hidden until renamed
            pq.write_table(table, temp)

    def _migrate_legacy_file(self) -> None:
        """A single-file table becomes part 0 of a directory, in steps a crash can stop anywhere and the next
        append finishes; a reader sees the file, then the directory."""
        staging = self.path.with_name(f".{self.path.name}.staging")
        if self.path.is_file():
            staging.mkdir(exist_ok=True)
            target = staging / _part_name(0, 0, pq.ParquetFile(self.path).metadata.num_rows)
            if not target.exists():
                os.link(self.path, target)
            os.replace(self.path, self._legacy)
        if self._legacy.exists():
            if staging.exists():
                os.rename(staging, self.path)
            self._legacy.unlink()

    def compact(self) -> None:
        """Merge the newest run of MERGE_RUN parts of one size class; one compaction at a time, never waited for."""
        with try_exclusive(self.lock.with_name(self.lock.name + ".compact")) as acquired:
            while acquired:
                listed = self._parts()
                live = self._live(listed)
                for covered in set(listed) - set(live):  # inputs of a merge that ended before deleting them
                    covered.path.unlink(missing_ok=True)
                run = self._run_to_merge(live)
                if not run:
                    return
                merged = latest_rows(pa.concat_tables([self.conform(read_file(p.path)) for p in run]), self.key)
                self._write(merged, run[-1].hi, run[0].lo)
                for part in run:  # readers that listed them still open them; new listings skip them as covered
                    part.path.unlink(missing_ok=True)

    @staticmethod
    def _run_to_merge(parts: list[Part]) -> list[Part]:
        """MERGE_RUN consecutive parts of one size class, the newest such run (parts sorted by sequence)."""
        run: list[Part] = []
        for part in reversed(parts):
            if run and part.size_class != run[0].size_class:
                run = []
            run.insert(0, part)
            if len(run) == MERGE_RUN:
                return run
        return []

    # --- reading -------------------------------------------------------------------------------------------------

    def _parts(self) -> list[Part]:
        try:
            names = os.listdir(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = [(m, name) for name in names if (m := _PART.fullmatch(name))]
        return sorted(Part(int(m[1]), int(m[2]), int(m[3]), self.path / name) for m, name in found)

    @staticmethod
    def _live(parts: list[Part]) -> list[Part]:
        """Parts not covered by a merged part (a compaction's inputs not deleted yet)."""
        merged = [p for p in parts if p.lo < p.hi]
        return [p for p in parts if not any(m.lo <= p.lo and p.hi <= m.hi and m != p for m in merged)]

    def _tables(self) -> list[pa.Table]:
        for _ in range(_READ_TRIES):
            try:
                if self.path.is_file():
                    return [read_file(self.path)]
                if self.path.is_dir():
                    return [read_file(p.path) for p in self._live(self._parts())]
                if self._legacy.is_file():  # renamed aside while it turns into a directory
                    return [read_file(self._legacy)]
                if not self.path.exists() and not self._legacy.exists():  # else it moved while looked at: again
                    return []
            except FileNotFoundError:  # a merged part's input deleted, or the legacy file moved, since listing
                pass
        raise RuntimeError(f"{self.path}: files kept vanishing while read ({_READ_TRIES} tries)")

    def read(self) -> pa.Table:
        tables = [self.conform(t) for t in self._tables()]
        if not tables:
            return self.schema.empty_table()
        return self._resolve(tables)

    def _resolve(self, tables: list[pa.Table]) -> pa.Table:
        """The parts as one table, each key's latest row. Keys are unique within a part, so only rows whose first
        key column (the trial) appears in more than one part are grouped: a plain concatenation otherwise."""
        combined = pa.concat_tables(tables)
        seen = pa.chunked_array([pc.unique(t.column(self.key[0])) for t in tables], tables[0].schema.field(self.key[0]).type)
        counts = pc.value_counts(seen)
        contested = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        if len(contested) == 0:
            return combined
        mask = pc.is_in(combined.column(self.key[0]), value_set=contested)
        return pa.concat_tables([combined.filter(pc.invert(mask)), latest_rows(combined.filter(mask), self.key)])
