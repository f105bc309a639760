"""Cost of recording a trial in a results store that already holds N trials, and of reading both tables back.

One trial is its trials.parquet row plus 650 epoch rows (250 pretraining + 400 clustering epochs). For each N the
store is filled in batches of trials, then --record trials are recorded one append each: the median is the steady
cost, the mean includes the merges of parts that some appends run. `--baseline` times, at the same N, what the
store did before parts (read both whole tables, replace the recorded rows, rewrite both files), for a ratio.
Example:
    python benchmarks/store_scale.py --trials 10 1000 10000 --record 64 --baseline 10 1000
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raydc.config import flatten, make_config
from raydc.engine.records import EpochRecord, TrialRecord
from raydc.tables.store import EPOCHS_FILE, TRIALS_FILE, ResultStore, epoch_row, epochs_schema, trial_row, trials_schema

EPOCHS = {"pretrain": 250, "cluster": 400}
CONFIG = flatten(make_config())
TEMPLATE = epoch_row("", EpochRecord(phase="", epoch=0))


def trial_rows(index: int, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    """One finished trial's row and its epoch rows, with random metric values (compression sees real entropy)."""
    tid = f"{index:016x}"
    row = trial_row(tid, TrialRecord(config=CONFIG, status="finished", final={"acc": float(rng.random())},
                                     epochs_done=EPOCHS["cluster"]))
    row["seed"] = index
    values = rng.random((sum(EPOCHS.values()), 4)).tolist()
    epochs = [{**TEMPLATE, "trial_id": tid, "phase": phase, "epoch": e, "loss": loss, "acc": acc, "nmi": nmi,
               "time_s": time_s}
              for (phase, e), (loss, acc, nmi, time_s) in zip(((p, e) for p, n in EPOCHS.items() for e in range(n)),
                                                              values)]
    return row, epochs


def fill(store: ResultStore, count: int, rng: np.random.Generator, batch: int = 500) -> None:
    for start in range(0, count, batch):
        rows = [trial_rows(i, rng) for i in range(start, min(count, start + batch))]
        store.append([t for t, _ in rows], [e for _, es in rows for e in es])


def rewrite_append(root: Path, trial: dict, epochs: list[dict]) -> None:
    """The store before parts: read each whole table, drop the recorded keys, write it all again."""
    for name, schema, rows, key in ((EPOCHS_FILE, epochs_schema(), epochs, ("trial_id", "phase", "epoch")),
                                    (TRIALS_FILE, trials_schema(), [trial], ("trial_id",))):
        path = root / name
        new = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
        old = pq.read_table(path)
        keys = set(zip(*(new.column(k).to_pylist() for k in key)))
        keep = [k not in keys for k in zip(*(old.column(c).to_pylist() for c in key))]
        pq.write_table(pa.concat_tables([old.filter(pa.array(keep)), new]), path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(count: int, record: int, baseline: bool) -> None:
    rng = np.random.default_rng(count)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        fill(store, count, rng)
        extra = [trial_rows(count + i, rng) for i in range(record)]
        costs = [timed(lambda t=t, e=e: store.append([t], e)) for t, e in extra]
        read = timed(lambda: (store.trials(), store.epochs()))
        parts = sum(1 for _ in Path(tmp, EPOCHS_FILE).glob("part-*")) + sum(1 for _ in Path(tmp, TRIALS_FILE).glob("part-*"))
        line = (f"{count:>7} trials  record: median {statistics.median(costs):.4f} s  mean {statistics.mean(costs):.4f} s"
                f"  max {max(costs):.3f} s  read both tables {read:.3f} s  parts {parts}")
        if baseline:
            legacy = Path(tmp, "legacy")
            legacy.mkdir()
            pq.write_table(store.epochs(), legacy / EPOCHS_FILE)
            pq.write_table(store.trials(), legacy / TRIALS_FILE)
            old = [timed(lambda t=t, e=e: rewrite_append(legacy, t, e))
                   for t, e in (trial_rows(count + record + i, rng) for i in range(3))]
            line += f"  | rewrite: {statistics.median(old):.4f} s ({statistics.median(old) / statistics.median(costs):.0f}×)"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[10, 1000, 10_000], help="trials recorded before")
    parser.add_argument("--record", type=int, default=64, help="trials recorded and timed at each size")
    parser.add_argument("--baseline", type=int, nargs="*", default=[], help="sizes that also time the full rewrite")
    args = parser.parse_args()
    for count in args.trials:
        measure(count, args.record, count in args.baseline)


if __name__ == "__main__":
    main()
