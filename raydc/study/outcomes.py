"""Record, from the driver, the trials that could not record themselves."""
from __future__ import annotations

from ray.tune import Callback

from raydc.store import ResultStore
from raydc.study.record import done_ids, record_unfinished
from raydc.study.tune_trial import TrialSetup


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the trial process failed"


class UnfinishedTrials(Callback):
    """A trial that crashed on every retry is recorded as `error`; one ASHA stopped early as `stopped`."""

    def __init__(self, setup: TrialSetup, early_stopping: bool):
        self.trial_setup = setup  # not `setup`: Callback.setup is a hook
        self.early_stopping = early_stopping

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.early_stopping and not trial.last_result.get("recorded"):
            tid, values = self.trial_setup.resolve(trial.config)
            record_unfinished(self.trial_setup.paths, tid, values, "stopped")

    def on_trial_error(self, iteration, trials, trial, **info):
        done = done_ids(ResultStore(self.trial_setup.paths.root))  # read once for all members
        for tid, values in self.trial_setup.resolve_all(trial.config):  # every member of a crashed population
            if tid not in done:
                record_unfinished(self.trial_setup.paths, tid, values, "error", _last_line(trial.get_error()))
