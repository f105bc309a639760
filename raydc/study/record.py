"""Write a trial's outcome into its study directory, and clear the scratch files it no longer needs.

Statuses in trials.parquet: finished (ran every epoch), failed (diverged: NaN/inf loss, with the reason),
stopped (ended early by ASHA), error (crashed on every retry). A rerun of the study keeps the first
three and runs error trials again, resuming from the checkpoint they left.
"""
from __future__ import annotations

import math
import shutil
from typing import Any

from raydc.config import flatten, make_config
from raydc.engine.records import FINAL_METRICS, TrialRecord
from raydc.tables.store import ResultStore, trial_row
from raydc.study.journal import EpochJournal
from raydc.study.paths import StudyPaths

DONE_STATUSES = ("finished", "failed", "stopped")


def done_ids(store: ResultStore) -> set[str]:
    table = store.trials()
    return {tid for tid, status in zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist())
            if status in DONE_STATUSES}


def _ray_node() -> str | None:
    """The id of the Ray node this process runs on, if it runs in Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def discard_scratch(paths: StudyPaths, tid: str) -> None:
    EpochJournal(paths.journal_file(tid)).remove()
    paths.lock_file(tid).unlink(missing_ok=True)
    shutil.rmtree(paths.checkpoint_dir(tid), ignore_errors=True)


def record_trial(paths: StudyPaths, tid: str, record: TrialRecord, keep_model: bool = True) -> None:
    """The trial's row, all its epoch rows (earlier attempts' included), its final assignments and its model."""
    store = ResultStore(paths.root)
    journal = EpochJournal(paths.journal_file(tid))
    record.node = _ray_node()
    store.save_assignments(tid, record)  # first, so a recorded trial always has its labels and model
    if keep_model:
        store.save_model(tid, record)
    store.append([trial_row(tid, record)], journal.rows())
    journal.remove()


def record_unfinished(paths: StudyPaths, tid: str, values: dict[str, Any], status: str,
                      error: str | None = None) -> None:
    """Record a trial that ended without writing its own record: stopped early, or crashed on every retry."""
    from raydc.engine.train import versions

    rows = EpochJournal(paths.journal_file(tid)).rows()
    cluster = sorted((r for r in rows if r["phase"] == "cluster"), key=lambda r: r["epoch"])
    evaluated = [r for r in cluster if not math.isnan(r["acc"])]
    record = TrialRecord(config=flatten(make_config(values)), status=status, error=error,
                         final={m: evaluated[-1].get(m) for m in FINAL_METRICS} if evaluated else {},
                         epochs_done=cluster[-1]["epoch"] + 1 if cluster else 0,
                         wall_time_s=max((r["elapsed_s"] for r in rows), default=0.0), versions=versions())
    ResultStore(paths.root).append([trial_row(tid, record)], rows)
    if status == "stopped":
        discard_scratch(paths, tid)
