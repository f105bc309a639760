"""The optuna search of a study: seeded TPE that knows every configuration the study directory already holds."""
from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from raydc.store import ResultStore
from raydc.study.paths import StudyPaths
from raydc.study.record import DONE_STATUSES
from raydc.study.spec import Study

Point = dict[str, Any]


class RecordedSearch(OptunaSearch):
    """OptunaSearch that, once Tune gives it the space, learns the recorded configurations: finished ones with their
    value, those that did not finish (diverged or stopped) as pruned trials, which TPE ranks below every finished one
    and so draws away from. Interrupted configurations are its points_to_evaluate: suggested first, they resume."""

    def __init__(self, finished: list[tuple[Point, float]], unfinished: list[Point], **kwargs: Any):
        super().__init__(**kwargs)
        self.finished, self.unfinished = finished, unfinished

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        for point, value in self.finished:
            self.add_evaluated_point(point, value)
        for point in self.unfinished:
            self.add_evaluated_point(point, None, pruned=True)
        return True


def tpe_search(study: Study, store: ResultStore, paths: StudyPaths) -> RecordedSearch:
    """TPE, seeded, told about the configurations this directory already finished, failed or stopped, and suggesting
    first those it holds unfinished, which then resume from their checkpoints."""
    rows = store.trials().to_pylist()
    recorded = {row["trial_id"] for row in rows if row["status"] in DONE_STATUSES}
    outcomes: dict[str, list[tuple[str, Any]]] = {}  # point -> (status, value) of each of its seeds
    points: dict[str, Point] = {}
    for row in rows:
        point = {d.key: row.get(d.key) for d in study.dimensions}
        if _fits(study, point):
            key = json.dumps(point, sort_keys=True)
            points[key] = point
            outcomes.setdefault(key, []).append((row["status"], row.get(study.spec.metric)))
    finished, unfinished, resume = [], [], {}
    for key, seeds in outcomes.items():
        values = [value for status, value in seeds if status == "finished"]
        if any(status not in DONE_STATUSES for status, _ in seeds):  # error: crashed on every retry
            resume[key] = points[key]
        elif len(values) == len(seeds) and all(v is not None and math.isfinite(v) for v in values):
            finished.append((points[key], sum(values) / len(values)))  # a configuration's seeds: their mean
        else:
            unfinished.append(points[key])
    for file in (paths.root / "journal").glob("*.params.json"):  # cut off with the driver: no row at all
        tid, point = file.name.removesuffix(".params.json"), json.loads(file.read_text())
        if _fits(study, point) and tid not in recorded:
            resume.setdefault(json.dumps(point, sort_keys=True), point)
    resume = [point for _, point in sorted(resume.items())]
    # TPE starts with seeded random draws: a fresh seed per extension keeps it from redrawing recorded points.
    return RecordedSearch(finished, unfinished, seed=study.spec.search.seed + len(finished) + len(unfinished),
                          points_to_evaluate=resume or None)


def _fits(study: Study, point: Point) -> bool:
    """Whether a recorded point lies in the study's current space (a rerun may have changed it)."""
    return point.keys() == {d.key for d in study.dimensions} and all(
        point[d.key] in d.values if d.kind == "choice" else point[d.key] is not None and d.low <= point[d.key] <= d.high
        for d in study.dimensions)
