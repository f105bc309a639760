"""The optuna search of a study: seeded TPE whose Optuna study persists in <study dir>/optuna.db (Optuna's own
storage), so optuna-dashboard, optuna.visualization and optuna.load_study read it and a rerun continues it."""
from __future__ import annotations

import json
import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from raydc.config import ConfigError
from raydc.tables.store import ResultStore
from raydc.study.paths import StudyPaths
from raydc.study.record import DONE_STATUSES
from raydc.study.spec import Study

Point = dict[str, Any]
METRIC_ATTR = "raydc.metric"  # the study metric an Optuna study's values hold


class RecordedSearch(OptunaSearch):
    """OptunaSearch that, once Tune gives it the space, also learns the recorded configurations its Optuna study does
    not hold (a directory older than optuna.db): finished ones with their value, those that did not finish (diverged or
    stopped) as pruned trials, which TPE ranks below every finished one and so draws away from. Configurations to
    resume are its points_to_evaluate, which Optuna enqueues: suggested first, they resume from their checkpoints."""

    def __init__(self, finished: list[tuple[Point, float]], unfinished: list[Point], metric: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.finished, self.unfinished, self.study_metric = finished, unfinished, metric

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        self._ot_study.set_user_attr(METRIC_ATTR, self.study_metric)
        for point, value in self.finished:
            self.add_evaluated_point(point, value)
        for point in self.unfinished:
            self.add_evaluated_point(point, None, pruned=True)
        return True


def storage_url(paths: StudyPaths) -> str:
    return f"sqlite:///{paths.root / 'optuna.db'}"


def _previous_trials(study: Study, storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    """The trials of the directory's Optuna study, its stale running ones (their driver is gone) marked failed."""
    name = study.spec.name
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return []
    loaded = optuna.load_study(study_name=name, storage=storage)
    recorded_metric = loaded.user_attrs.get(METRIC_ATTR)
    if recorded_metric not in (None, study.spec.metric) or loaded.direction.name != (
            "MINIMIZE" if study.spec.mode == "min" else "MAXIMIZE"):
        raise ConfigError("metric", f"the Optuna study in optuna.db searched by {recorded_metric} "
                                    f"({loaded.direction.name.lower()}); keep it, or choose another --out")
    trials = loaded.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return loaded.get_trials(deepcopy=False)


def tpe_search(study: Study, store: ResultStore, paths: StudyPaths) -> RecordedSearch:
    """TPE, seeded, on the directory's persistent Optuna study: it knows every configuration the directory finished,
    failed or stopped, and suggests first those left unfinished (crashed on every retry, or cut off with the driver)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(storage_url(paths))
    previous = _previous_trials(study, storage)
    told = {_key(t.params) for t in previous if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    waiting = {_key(t.params) for t in previous if t.state == TrialState.WAITING}  # Optuna suggests these itself
    rows = store.trials().to_pylist()
    outcomes: dict[str, list[tuple[str, Any]]] = {}  # point -> (status, value) of each of its seeds
    points: dict[str, Point] = {}
    for row in rows:
        point = {d.key: row.get(d.key) for d in study.dimensions}
        if _fits(study, point):
            key = _key(point)
            points[key] = point
            outcomes.setdefault(key, []).append((row["status"], row.get(study.spec.metric)))
    finished, unfinished, resume = [], [], {}
    for key, seeds in outcomes.items():
        values = [value for status, value in seeds if status == "finished"]
        if any(status not in DONE_STATUSES for status, _ in seeds):  # error: crashed on every retry
            resume[key] = points[key]
        elif key in told:
            continue
        elif len(values) == len(seeds) and all(v is not None and math.isfinite(v) for v in values):
            finished.append((points[key], sum(values) / len(values)))  # a configuration's seeds: their mean
        else:
            unfinished.append(points[key])
    for trial in previous:  # cut off with the driver: no row at all
        key = _key(trial.params)
        if trial.state == TrialState.FAIL and key not in outcomes and _fits(study, trial.params):
            resume.setdefault(key, trial.params)
    resume = [point for key, point in sorted(resume.items()) if key not in waiting]
    # TPE starts with seeded random draws: a fresh seed per extension keeps it from redrawing recorded points.
    return RecordedSearch(finished, unfinished, study.spec.metric, storage=storage, study_name=study.spec.name,
                          seed=study.spec.search.seed + len(previous) + len(finished) + len(unfinished),
                          points_to_evaluate=resume or None)


def _key(point: Point) -> str:
    return json.dumps(point, sort_keys=True)


def _fits(study: Study, point: Point) -> bool:
    """Whether a recorded point lies in the study's current space (a rerun may have changed it)."""
    return point.keys() == {d.key for d in study.dimensions} and all(
        point[d.key] in d.values if d.kind == "choice" else point[d.key] is not None and d.low <= point[d.key] <= d.high
        for d in study.dimensions)
