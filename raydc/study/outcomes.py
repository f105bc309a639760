"""Record, from the driver, the trials that could not record themselves."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper

from raydc.config import ConfigError
from raydc.tables.store import ResultStore
from raydc.study.record import done_ids, record_unfinished
from raydc.study.tune_trial import TrialSetup

log = logging.getLogger(__name__)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the trial process failed"


def _error_text(trial: Any) -> str | None:
    """The trial's error trace: the driver's own copy, as the one in storage is synced only after this hook."""
    local = trial.error_file
    if local and Path(local).is_file():
        return Path(local).read_text(errors="replace")
    return trial.get_error()


class UnfinishedTrials(Callback):
    """A trial that crashed on every retry is recorded as `error`; one ASHA stopped early as `stopped`."""

    def __init__(self, setup: TrialSetup, early_stopping: bool, interrupted: Stopper | None = None):
        self.trial_setup = setup  # not `setup`: Callback.setup is a hook
        self.early_stopping = early_stopping
        self.interrupted = interrupted  # trials a signal stopped are neither stopped early nor crashed: they resume

    def _members(self, trial: Any) -> list[tuple[str, dict[str, Any]]]:
        """The study trials a Tune trial ran, with the settings they ran with; none when its parameters are invalid."""
        setup = self.trial_setup
        try:
            members = setup.resolve_all(trial.config)
        except ConfigError as exc:  # the trial failed on the same error; a raise here would end the whole study
            log.warning("trial %s not recorded: invalid parameters: %s", trial, exc)
            return []
        return [(tid, setup.runtime_values(values, setup.resources.device)) for tid, values in members]

    def _interrupted(self) -> bool:
        return self.interrupted is not None and self.interrupted.stop_all()

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self._interrupted():
            return
        if self.early_stopping and not trial.last_result.get("recorded"):
            members = self._members(trial)  # one, or a configuration's seeds
            done = done_ids(ResultStore(self.trial_setup.paths.root)) if len(members) > 1 else set()
            for tid, values in members:
                if tid not in done:
                    record_unfinished(self.trial_setup.paths, tid, values, "stopped")

    def on_trial_error(self, iteration, trials, trial, **info):
        if self._interrupted():
            return
        members = self._members(trial)  # every member of a crashed population
        if not members:
            return
        done = done_ids(ResultStore(self.trial_setup.paths.root))  # read once for all members
        error = _last_line(_error_text(trial))
        for tid, values in members:
            if tid not in done:
                record_unfinished(self.trial_setup.paths, tid, values, "error", error)
