"""The store as a directory of parts: exact rows under concurrent writers and readers, merges, older studies."""
import multiprocessing
import os
import time

import pyarrow.parquet as pq
import pytest

from raydc.tables import parts
from raydc.config import flatten, make_config
from raydc.engine.records import EpochRecord, TrialRecord
from raydc.tables.store import EPOCHS_FILE, TRIALS_FILE, ResultStore, epoch_row, trial_row

CONFIG = flatten(make_config())
EPOCHS_PER_TRIAL = 30


def _rows(tid: str, acc: float):
    trial = trial_row(tid, TrialRecord(config=CONFIG, status="finished", final={"acc": acc}))
    return trial, [epoch_row(tid, EpochRecord(phase="cluster", epoch=e, acc=acc)) for e in range(EPOCHS_PER_TRIAL)]


def _writer(root, writer, trials, errors):
    try:
        for i in range(trials):
            tid = f"w{writer}-t{i}"
            trial, epochs = _rows(tid, 0.1)
            ResultStore(root).append([trial], epochs)
            if i % 5 == 0:  # a retried trial records again: its new rows supersede the old ones
                trial, epochs = _rows(tid, 0.9)
                ResultStore(root).append([trial], epochs[EPOCHS_PER_TRIAL // 2:])
    except Exception as error:  # noqa: BLE001 - reported to the test
        errors.put(f"writer {writer}: {error!r}")


def _reader(root, stop, errors, reads):
    count = 0
    while not stop.is_set():
        try:
            trials = ResultStore(root).trials().to_pylist()
            epochs = ResultStore(root).epochs()
        except Exception as error:  # noqa: BLE001
            errors.put(f"read: {error!r}")
            continue
        count += 1
        keys = list(zip(*(epochs.column(c).to_pylist() for c in ("trial_id", "phase", "epoch"))))
        if len(keys) != len(set(keys)):
            errors.put("a reader saw a duplicate epoch row")
        per_trial = {}
        for tid, *_ in keys:
            per_trial[tid] = per_trial.get(tid, 0) + 1
        for row in trials:  # epochs land before their trial's row
            if per_trial.get(row["trial_id"]) != EPOCHS_PER_TRIAL:
                errors.put(f"a reader saw trial {row['trial_id']} without all its epochs")
    reads.put(count)


def test_concurrent_writers_and_readers_never_fail_and_end_with_the_exact_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(parts, "MERGE_RUN", 4)  # merges happen often while readers read (inherited by fork)
    ctx = multiprocessing.get_context("fork")
    errors, reads, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    writers = [ctx.Process(target=_writer, args=(tmp_path, w, 25, errors)) for w in range(3)]
    readers = [ctx.Process(target=_reader, args=(tmp_path, stop, errors, reads)) for _ in range(2)]
    for process in readers + writers:
        process.start()
    deadline = time.monotonic() + 120
    for process in writers:
        process.join(max(1, deadline - time.monotonic()))
    stop.set()
    for process in readers:
        process.join(30)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found[:5]
    assert sum(reads.get() for _ in readers) > 0
    store = ResultStore(tmp_path)
    trials, epochs = store.trials().to_pylist(), store.epochs().to_pylist()
    assert sorted(r["trial_id"] for r in trials) == sorted(f"w{w}-t{i}" for w in range(3) for i in range(25))
    assert len(epochs) == 75 * EPOCHS_PER_TRIAL
    retried = {r["trial_id"]: r["acc"] for r in trials}
    assert all(retried[f"w{w}-t{i}"] == (0.9 if i % 5 == 0 else 0.1) for w in range(3) for i in range(25))
    late = [r for r in epochs if r["trial_id"] == "w0-t0" and r["epoch"] >= EPOCHS_PER_TRIAL // 2]
    assert {r["acc"] for r in late} == {0.9}
    assert len(os.listdir(tmp_path / EPOCHS_FILE)) < 75  # parts merged
    assert pq.read_table(tmp_path / TRIALS_FILE).num_rows >= 75  # pyarrow reads the directory as one table


def test_a_study_written_as_single_files_stays_readable_and_takes_new_trials(tmp_path):
    trial, epochs = _rows("old", 0.5)
    store = ResultStore(tmp_path)
    pq.write_table(store.trials().from_pylist([trial], schema=store.trials().schema), tmp_path / TRIALS_FILE)
    pq.write_table(store.epochs().from_pylist(epochs, schema=store.epochs().schema), tmp_path / EPOCHS_FILE)
    assert ResultStore(tmp_path).trials().column("trial_id").to_pylist() == ["old"]
    new_trial, new_epochs = _rows("new", 0.7)
    store.append([new_trial], new_epochs)
    assert (tmp_path / TRIALS_FILE).is_dir()
    assert sorted(store.trials().column("trial_id").to_pylist()) == ["new", "old"]
    assert store.epochs().num_rows == 2 * EPOCHS_PER_TRIAL


def test_a_conversion_cut_short_is_finished_by_the_next_append(tmp_path):
    trial, epochs = _rows("old", 0.5)
    store = ResultStore(tmp_path)
    pq.write_table(store.trials().from_pylist([trial], schema=store.trials().schema), tmp_path / TRIALS_FILE)
    # killed between moving the file aside and putting the directory in its place
    table = parts.PartTable(tmp_path / TRIALS_FILE, store.trials().schema, ("trial_id",), lambda t: t,
                            tmp_path / ".store.lock")
    staging = tmp_path / f".{TRIALS_FILE}.staging"
    staging.mkdir()
    os.link(tmp_path / TRIALS_FILE, staging / parts._part_name(0, 0, 1))
    os.replace(tmp_path / TRIALS_FILE, tmp_path / f".{TRIALS_FILE}.legacy")
    assert table.read().column("trial_id").to_pylist() == ["old"]  # readers see the moved file meanwhile
    store.append([_rows("new", 0.7)[0]])
    assert sorted(store.trials().column("trial_id").to_pylist()) == ["new", "old"]
    assert not (tmp_path / f".{TRIALS_FILE}.legacy").exists() and not staging.exists()


@pytest.mark.parametrize("run", [4, 16])
def test_parts_stay_few_and_merged_rows_keep_the_latest(tmp_path, monkeypatch, run):
    monkeypatch.setattr(parts, "MERGE_RUN", run)
    store = ResultStore(tmp_path)
    for i in range(3 * run * run):
        store.append([_rows(f"t{i % 50}", float(i))[0]])  # each trial recorded again and again
    listed = os.listdir(tmp_path / TRIALS_FILE)
    assert len(listed) < 3 * run
    values = {r["trial_id"]: r["acc"] for r in store.trials().to_pylist()}
    last = {f"t{i % 50}": float(i) for i in range(3 * run * run)}
    assert values == last
