"""A one-line progress report while a study runs: trials done, running and failed, best so far, ETA."""
from __future__ import annotations

import math
import sys
import time

from ray.tune import Callback

from raydc.tables.store import ResultStore


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def recorded_best(store: ResultStore, metric: str, mode: str) -> float:
    """The best value of the metric among the trials the study directory already finished (NaN if none)."""
    values = [row[metric] for row in store.trials().to_pylist()
              if row["status"] == "finished" and row.get(metric) is not None and math.isfinite(row[metric])]
    return (max if mode == "max" else min)(values) if values else math.nan


class ProgressLine(Callback):
    """best: over the whole study, the trials recorded before this run included."""

    def __init__(self, total: int, metric: str, mode: str, best: float = math.nan):
        self.total, self.metric, self.mode = total, metric, mode
        self.tty = sys.stdout.isatty()
        self.interval = 1.0 if self.tty else 15.0  # a log file gets a line now and then, a terminal one live line
        self.started = time.monotonic()
        self.last_print = self.started
        self.progress: dict[str, float] = {}  # Tune trial id -> share of its epochs done
        self.outcomes: dict[str, str] = {}    # Tune trial id -> finished | failed | stopped | error
        self.best = best

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress[trial.trial_id] = result.get("progress", 0.0)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        self.outcomes[trial.trial_id] = result.get("status", "stopped")
        value = result.get(self.metric, math.nan)
        if result.get("status") == "finished" and math.isfinite(value):
            better = value > self.best if self.mode == "max" else value < self.best
            self.best = value if math.isnan(self.best) or better else self.best

    def on_trial_error(self, iteration, trials, trial, **info):
        self.outcomes[trial.trial_id] = "error"

    def line(self, running: int) -> str:
        elapsed = time.monotonic() - self.started
        done = len(self.outcomes)
        failed = sum(o in ("failed", "error") for o in self.outcomes.values())
        fraction = (done + sum(p for t, p in self.progress.items() if t not in self.outcomes)) / max(self.total, 1)
        eta = _clock(elapsed * (1 - fraction) / fraction) if fraction > 0 else "-"
        best = f"{self.best:.4f}" if math.isfinite(self.best) else "-"
        return (f"[{_clock(elapsed)}] {done}/{self.total} done, {running} running, {failed} failed | "
                f"best {self.metric} {best} | ETA {eta}")

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self.last_print >= self.interval:
            self.last_print = now
            self._print(self.line(sum(t.status == "RUNNING" for t in trials)), final=False)

    def on_experiment_end(self, trials, **info):
        self._print(self.line(0), final=True)

    def _print(self, text: str, final: bool) -> None:
        # sys.stdout is looked up on every print: Tune pickles its callbacks, and a stream is not picklable.
        if self.tty:
            sys.stdout.write(f"\r{text:<100}" + ("\n" if final else ""))
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
