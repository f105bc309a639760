"""A trial's wall time and seconds per stage, carried across a resume by its checkpoint.

A trial resumed after a crash reports what the whole trial cost (the runs before the checkpoint plus this one), not
only what its last run did; epochs lost after the checkpoint and run again are counted once, by the run that kept them.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGE_TIMES = ("pretrain_time_s", "cluster_time_s", "selflabel_time_s", "reset_time_s")


class TrialClock:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.before = 0.0  # wall seconds of the runs before a resume
        self.spent = dict.fromkeys(STAGE_TIMES, 0.0)
        self.running: dict[str, float] = {}  # stage -> when this run entered it

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.running[name] = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - self.running.pop(name)

    def add(self, name: str, seconds: float) -> None:
        self.spent[name] += seconds

    def state_dict(self) -> dict[str, float]:
        """Totals up to now, a stage still running included (a checkpoint is saved mid-stage)."""
        now = time.perf_counter()
        totals = {name: spent + now - self.running.get(name, now) for name, spent in self.spent.items()}
        return {"wall_time_s": self.elapsed(), **totals}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue from a checkpoint's totals; this run's time so far (loading data, the checkpoint) adds to them."""
        self.before = float(state["wall_time_s"])
        for name in STAGE_TIMES:
            self.spent[name] = float(state.get(name, 0.0))
